"""A built-in indirect-object identification (IOI) prompt set (Wang et al., 2022).

Each prompt names two people, repeats one of them (the subject, S) and ends where the
other (the indirect object, IO) should come next:

    "When Mary and John went to the store, John gave a drink to"  ->  " Mary"

Both orders of the first two names are built: ABBA (IO first: "Mary and John ... John")
and BABA (S first: "John and Mary ... John"), so a model that merely prefers the first
(or the second) name mentioned scores 0 on average. The ABC control replaces the repeated
S with a third name C ("When Mary and John went to the store, Tom gave a drink to"): then
nothing singles out IO over S, and a model that uses the repetition should show no
preference between the two.

Names are kept only if they are one token with a leading space for the model's tokenizer
(" Mary"), so the IO and S logits are single entries of the output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lookingglass.errors import InputError

# {A} and {B}: the first two mentions; {S}: the repeated subject. Prompts end right
# before the indirect object.
TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "Then, {A} and {B} went to the office. {S} gave a letter to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "After {A} and {B} went to the restaurant, {S} gave a ring to",
    "While {A} and {B} were working at the hospital, {S} gave a necklace to",
    "Afterwards, {A} and {B} went to the school. {S} gave a book to",
    "Friends {A} and {B} found a bone at the garden. {S} gave it to",
    "{A} and {B} had a lot of fun at the house. {S} gave a snack to",
    "When {A} and {B} got a computer at the mall, {S} decided to give it to",
    "After the lunch, {A} and {B} went to the station. {S} gave a key to",
    "Then, {A} and {B} were thinking about going to the beach. {S} wanted to give a bag to",
    "While {A} and {B} were commuting to the airport, {S} gave a phone to",
    "After {A} and {B} spent the day at the museum, {S} handed a ticket to",
    "At the market, {A} and {B} bought some apples. {S} gave one to",
    "{A} and {B} were cooking dinner in the kitchen. {S} passed the salt to",
    "On Monday, {A} and {B} visited the library. {S} lent a pen to",
    "When {A} and {B} arrived at the party, {S} brought a gift to",
    "After class, {A} and {B} walked to the cafe. {S} sent a message to",
    "During the trip, {A} and {B} stopped at a hotel. {S} gave the keys to",
    "Yesterday, {A} and {B} met at the gym. {S} threw the towel to",
    "Later, {A} and {B} went to the beach. {S} offered a sandwich to",
    "Since {A} and {B} were at the concert, {S} showed a photo to",
    "{A} and {B} went to the zoo together. {S} gave a banana to",
)

NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kim", "Paul",
    "Sarah", "David", "Michael", "Anna", "Rachel", "Jessica", "Lisa", "Emma", "Alice",
    "Bob", "Charlie", "Jack", "Lucy", "Kate", "Mark", "Peter", "Laura", "Steve", "Tim",
    "Ben", "Sam", "Chris", "Alex", "Ryan", "Adam", "Eric", "Jane", "Joe", "Mike",
)  # fmt: skip


@dataclass(frozen=True)
class IOIPrompt:
    """One prompt: its text, the indirect object and subject names (without the leading
    space), the third name of the ABC control, the template index and the order."""

    text: str
    io: str
    s: str
    c: str
    template: int
    order: str  # "ABBA" (IO mentioned first) or "BABA" (S mentioned first)

    @property
    def abc_text(self) -> str:
        """The ABC control: the same prompt with the repeated S replaced by C."""
        first, second = (self.io, self.s) if self.order == "ABBA" else (self.s, self.io)
        return TEMPLATES[self.template].format(A=first, B=second, S=self.c)


def single_token_names(tokenizer, names: tuple[str, ...] = NAMES) -> list[str]:
    """The names that `tokenizer` encodes as exactly one token with a leading space."""
    return [n for n in names if len(tokenizer.encode(" " + n, add_special_tokens=False)) == 1]


def ioi_prompts(tokenizer, pairs_per_template: int = 3, seed: int = 0) -> list[IOIPrompt]:
    """The IOI prompt set: for every template, `pairs_per_template` name pairs drawn
    (seeded) from the names that are single tokens for `tokenizer`, each in both orders
    (ABBA then BABA); the same seed gives the same prompts everywhere.

    Raises:
        InputError: if fewer than 3 names are single tokens (IO, S and the control's C).
    """
    names = single_token_names(tokenizer)
    if len(names) < 3:
        raise InputError(
            f"Only {len(names)} of the {len(NAMES)} built-in names are single tokens with a "
            "leading space for this tokenizer; the IOI prompt set needs at least 3."
        )
    rng = random.Random(seed)
    prompts = []
    for index, template in enumerate(TEMPLATES):
        for _ in range(pairs_per_template):
            io, s, c = rng.sample(names, 3)
            for order, (first, second) in (("ABBA", (io, s)), ("BABA", (s, io))):
                text = template.format(A=first, B=second, S=s)
                prompts.append(IOIPrompt(text, io, s, c, index, order))
    return prompts

"""The short dialogue when no agent took the call: a callback, or keep waiting.

While it runs it answers the caller's turns before the turn manager does (the call core routes
turns and keys to it). Spoken answers are read by keyword; 1 and 2 on the keypad do the same.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from intents.dialogue.turns import Reply

QUESTION = ("I'm sorry, none of our colleagues could take your call just now. Would you like us "
            "to call you back, or would you rather keep waiting? You can also press 1 for a "
            "callback, or 2 to keep waiting.")
CALLBACK_DONE = ("Done: a colleague will call you back at this number within the next business "
                 "hours. Thank you for calling. Goodbye.")
CALLBACK_FAILED = ("I'm sorry, I couldn't book the callback: our system didn't answer. Please "
                   "call again later. Goodbye.")
NO_CALLER_ID = ("I can't book a callback without your number. I'll keep trying a colleague "
                "for you.")
KEEP_WAITING = "Of course. Please hold while I try again."
AGAIN = ("Sorry, would you like a callback, or to keep waiting? Press 1 for a callback or 2 to "
         "keep waiting.")
_WANTS_CALLBACK = re.compile(r"\b(call ?back|call me back|ring me back|callback|call me)\b")
_WANTS_WAIT = re.compile(r"\b(wait|hold|keep|stay|try again|another|next)\b")


class CallbackOffer:
    """Asks once; ``answer`` takes the caller's words, ``keyed`` their digits.

    ``book`` writes the callback (True when it was booked); ``retry(restart_queue)`` rings the
    agents again. ``done`` is set once the caller has chosen: the call core stops routing to it.
    """

    question = QUESTION

    def __init__(self, caller_number: str | None, book: Callable[[], Awaitable[bool]],
                 retry: Callable[[bool], None]) -> None:
        self.caller_number = caller_number
        self.book = book
        self.retry = retry
        self.done = False

    async def keyed(self, digits: str) -> Reply | None:
        if digits == "1":
            return await self.answer("callback")
        if digits == "2":
            return await self.answer("wait")
        return None

    async def answer(self, text: str) -> Reply:
        lowered = text.lower()
        if _WANTS_CALLBACK.search(lowered):
            self.done = True
            if not self.caller_number:
                self.retry(False)
                return Reply(text=NO_CALLER_ID)
            if not await self.book():
                return Reply(text=CALLBACK_FAILED, end_call=True)
            return Reply(text=CALLBACK_DONE, end_call=True)
        if _WANTS_WAIT.search(lowered):
            self.done = True
            self.retry(True)
            return Reply(text=KEEP_WAITING)
        return Reply(text=AGAIN)

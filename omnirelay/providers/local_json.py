"""JSON mode for the local model, pure parts: a grammar for ``json_object`` replies that cannot run on forever,
and an incremental JSON prefix scanner that knows the shortest text completing what has been written so far.

Why a grammar of our own. llama.cpp's stock JSON grammar allows any nesting depth and a newline plus up to 20
spaces or tabs between any two tokens, and a 135M model under it can open ``{"data": {`` after ``{"data": {``
(or pad with whitespace) until ``max_tokens``. This one keeps the JSON language but bounds the ways to go on:
objects and arrays nest at most ``MAX_DEPTH`` deep (then only scalars fit), at most one space or newline stands
wherever whitespace may, and numbers have bounded digits. Strings stay unbounded: cutting a model's text short is
worse than letting the token budget end it, and the budget is handled by the caller with ``JsonPrefix``: when the
tokens left are just enough for ``completion()``, it writes that instead of whatever the model wanted next.
"""

from __future__ import annotations

MAX_DEPTH = 4
MAX_INT_DIGITS = 16
MAX_FRACTION_DIGITS = 16
MAX_EXPONENT_DIGITS = 3

_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = '"\\/bfnrt'
# States after which a number may end: the number itself is then complete.
_NUMBER_ENDS = frozenset({"zero", "int", "frac", "exp_digits"})


def json_object_grammar(max_depth: int = MAX_DEPTH) -> str:
    """A GBNF grammar for one JSON object nested at most ``max_depth`` deep, with no trailing text."""
    if max_depth < 1:
        raise ValueError("max_depth must be at least 1")
    rules = ["root ::= obj1", "ws ::= [ \\n]?"]
    for depth in range(1, max_depth + 1):
        inner = f"val{depth + 1}"
        rules.append(f'obj{depth} ::= "{{" ws ( member{depth} ( "," ws member{depth} )* ws )? "}}"')
        rules.append(f'member{depth} ::= string ":" ws {inner}')
        rules.append(f'arr{depth} ::= "[" ws ( {inner} ( "," ws {inner} )* ws )? "]"')
        if depth > 1:
            rules.append(f"val{depth} ::= obj{depth} | arr{depth} | scalar")
    rules.append(f"val{max_depth + 1} ::= scalar")
    rules.append('scalar ::= string | number | "true" | "false" | "null"')
    rules.append('string ::= "\\"" char* "\\""')
    rules.append('char ::= [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )')
    rules.append(
        f'number ::= "-"? ( "0" | [1-9] [0-9]{{0,{MAX_INT_DIGITS - 1}}} ) ( "." [0-9]{{1,{MAX_FRACTION_DIGITS}}} )? '
        f"( [eE] [-+]? [0-9]{{1,{MAX_EXPONENT_DIGITS}}} )?"
    )
    return "\n".join(rules) + "\n"


class JsonPrefix:
    """Reads JSON text a piece at a time (RFC 8259, any top-level value) and keeps track of whether it can still
    become a valid document, and of the shortest text that would make it one.

    ``feed`` returns False, and the scanner stays invalid, at the first character no JSON document could have
    there. ``completion()`` is then None; otherwise ``text + completion()`` parses. ``complete`` says the text
    read is a whole document already (a trailing number could still go on, but need not)."""

    def __init__(self) -> None:
        self.valid = True
        self._stack: list[str] = []  # "{" or "[" for each open container, innermost last
        self._state = "value"
        self._in_key = False  # the string being read is an object key
        self._rest = ""  # what is left of true/false/null, while reading one
        self._hex = 0  # \u digits still to read

    @property
    def depth(self) -> int:
        return len(self._stack)

    @property
    def complete(self) -> bool:
        return self.valid and not self._stack and (self._state == "end" or self._state in _NUMBER_ENDS)

    def feed(self, text: str) -> bool:
        if not self.valid:
            return False
        for char in text:
            if not self._step(char):
                self.valid = False
                return False
        return True

    def completion(self) -> str | None:
        if not self.valid:
            return None
        closers = "".join("}" if opener == "{" else "]" for opener in reversed(self._stack))
        return self._head() + closers

    def _head(self) -> str:
        """What finishes the innermost open item (not the containers around it)."""
        state = self._state
        after_string = ":null" if self._in_key else ""
        if state == "string":
            return '"' + after_string
        if state == "escape":
            return 'n"' + after_string
        if state == "hex":
            return "0" * self._hex + '"' + after_string
        if state == "literal":
            return self._rest
        if state in ("minus", "dot", "exp", "exp_sign"):
            return "0"
        return {"value": "null", "key": '"":null', "colon": ":null"}.get(state, "")

    def _end_value(self) -> None:
        self._state = "after" if self._stack else "end"

    def _step(self, char: str) -> bool:
        state = self._state
        if state == "string":
            return self._string_char(char)
        if state == "escape":
            if char == "u":
                self._state, self._hex = "hex", 4
            elif char in _ESCAPES:
                self._state = "string"
            else:
                return False
            return True
        if state == "hex":
            if char not in _HEX:
                return False
            self._hex -= 1
            if self._hex == 0:
                self._state = "string"
            return True
        if state == "literal":
            if not self._rest.startswith(char):
                return False
            self._rest = self._rest[1:]
            if not self._rest:
                self._end_value()
            return True
        if state in _NUMBER_STATES:
            return self._number_char(char)
        return self._structural(char)

    def _string_char(self, char: str) -> bool:
        if char == '"':
            if self._in_key:
                self._state = "colon"
            else:
                self._end_value()
        elif char == "\\":
            self._state = "escape"
        elif ord(char) < 0x20:
            return False
        return True

    def _number_char(self, char: str) -> bool:
        state = self._state
        if char in _DIGITS:
            if state == "minus":
                self._state = "zero" if char == "0" else "int"
            elif state == "zero":
                return False  # no leading zeros
            elif state == "dot":
                self._state = "frac"
            elif state in ("exp", "exp_sign"):
                self._state = "exp_digits"
            return True
        if char == "." and state in ("zero", "int"):
            self._state = "dot"
            return True
        if char in "eE" and state in ("zero", "int", "frac"):
            self._state = "exp"
            return True
        if char in "+-" and state == "exp":
            self._state = "exp_sign"
            return True
        if state not in _NUMBER_ENDS:
            return False
        self._end_value()  # the number ended just before this character, which belongs to what follows
        return self._structural(char)

    def _structural(self, char: str) -> bool:
        if char in _WS:
            return True
        state = self._state
        if state in ("value", "first_item"):
            if char == "]" and state == "first_item":
                return self._close("[")
            return self._start_value(char)
        if state in ("first_key", "key"):
            if char == "}" and state == "first_key":
                return self._close("{")
            if char != '"':
                return False
            self._state, self._in_key = "string", True
            return True
        if state == "colon":
            if char != ":":
                return False
            self._state = "value"
            return True
        if state == "after":
            if char == ",":
                self._state = "key" if self._stack[-1] == "{" else "value"
                return True
            return self._close("{" if char == "}" else "[" if char == "]" else "")
        return False  # "end": only whitespace may follow a whole document

    def _close(self, opener: str) -> bool:
        if not self._stack or self._stack[-1] != opener:
            return False
        self._stack.pop()
        self._end_value()
        return True

    def _start_value(self, char: str) -> bool:
        if char == "{":
            self._stack.append("{")
            self._state = "first_key"
        elif char == "[":
            self._stack.append("[")
            self._state = "first_item"
        elif char == '"':
            self._state, self._in_key = "string", False
        elif char == "-":
            self._state = "minus"
        elif char == "0":
            self._state = "zero"
        elif char in _DIGITS:
            self._state = "int"
        elif char in "tfn":
            self._state, self._rest = "literal", {"t": "rue", "f": "alse", "n": "ull"}[char]
        else:
            return False
        return True


_NUMBER_STATES = frozenset({"minus", "zero", "int", "dot", "frac", "exp", "exp_sign", "exp_digits"})


def is_json_prefix(text: str) -> bool:
    """Whether some text appended to ``text`` makes a valid JSON document."""
    scanner = JsonPrefix()
    return scanner.feed(text)

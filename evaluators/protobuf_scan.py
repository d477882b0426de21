"""Count the messages a protobuf encoding holds, without parsing it into objects.

Parsing builds one object per message, and a message can cost two bytes of the file: an ONNX
file of empty nodes parses to about 80 times its size. An honest model is mostly tensor bytes,
with few messages per byte, so the count is what bounds the memory a parse would take. The walk
follows the message's descriptor, so only fields that hold messages are entered; runs of one
scalar field (ONNX attributes store the ints of a tree ensemble unpacked, one tag per value) are
skipped by a regular expression, at the speed of the re engine rather than of this loop.
"""

import re
from functools import lru_cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_SCALAR_BODY = {_VARINT: rb"[\x80-\xff]{0,9}[\x00-\x7f]", _FIXED64: rb"[\s\S]{8}", _FIXED32: rb"[\s\S]{4}"}
_SCALAR_SIZE = {_FIXED64: 8, _FIXED32: 4}


class Malformed(ValueError):
    """The bytes are not a valid encoding of the message."""


class TooComplex(ValueError):
    """More messages, or more fields walked one at a time, than the caller allows."""


def message_count(
    data: bytes, descriptor: Descriptor, *, max_messages: int, max_fields: int, max_depth: int = 100
) -> int:
    """The number of messages in `data` (the outer one included), or TooComplex once it passes
    `max_messages`; Malformed where the bytes cannot be a `descriptor` message.

    The fields the walk steps over one at a time (strings, lone numbers, fields the schema does
    not know) are bounded too, at `max_fields`, so that its time is bounded whatever the bytes:
    about a second per million fields."""
    view = memoryview(data)
    count = 1
    steps_left = max_fields
    # Depth first, each frame [message type, position, end]: the walk holds one frame per level of
    # nesting, never a list of the messages still to visit.
    stack = [[descriptor, 0, len(data)]]
    while stack:
        frame = stack[-1]
        message_type, position, end = frame
        if position >= end:
            stack.pop()
            continue
        steps_left -= 1
        if steps_left < 0:
            raise TooComplex(f"more than {max_fields:,} fields outside runs of numbers")
        fields = message_type.fields_by_number
        tag_start = position
        tag, position = _varint(view, position, end)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _LENGTH:
            length, position = _varint(view, position, end)
            if position + length > end:
                raise Malformed("a field runs past the end of its message")
            frame[1] = position + length
            field = fields.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                count += 1
                if count > max_messages:
                    raise TooComplex(f"more than {max_messages:,} messages")
                if len(stack) >= max_depth:
                    raise Malformed(f"messages nest more than {max_depth} deep")
                stack.append([field.message_type, position, position + length])
        elif wire_type in _SCALAR_BODY:
            if number in fields:
                run = _scalar_run(bytes(view[tag_start:position]), wire_type).match(data, tag_start, end)
                position = run.end() if run else end + 1
            else:
                position += _SCALAR_SIZE.get(wire_type, 0) or _varint(view, position, end)[1] - position
            if position > end:
                raise Malformed("a number is cut short")
            frame[1] = position
        else:  # 3 and 4 are proto2 groups, which ONNX never uses; 6 and 7 do not exist
            raise Malformed(f"field {number} has wire type {wire_type}")
    return count


def _varint(view: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise Malformed("a number is cut short")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


@lru_cache(maxsize=1024)  # keyed by the schema's fields, so it stays small; bounded all the same
def _scalar_run(tag: bytes, wire_type: int) -> re.Pattern:
    """One or more fields with this tag and their values, one after the other."""
    return re.compile(rb"(?:" + re.escape(tag) + _SCALAR_BODY[wire_type] + rb")+")

"""A submission's free metadata: what is accepted, and the request fingerprint built from it.

The API, the web form and the services all go through these functions, so every limit is
enforced, and worded, in one place, and nothing that PostgreSQL or a page could choke on is
stored. Each refusal is a Rejected naming the metadata field.
"""

import hashlib
import json
import math
import re
from datetime import date

from leaderboard.errors import Rejected

MAX_METADATA_BYTES = 16 * 1024
# The top-level object is level 1: {"ci": {"run": 1}} is 2 levels deep.
MAX_METADATA_DEPTH = 8
MAX_METADATA_KEYS = 200
MAX_METADATA_KEY_LENGTH = 100
TRAINING_CUTOFF = "training_cutoff"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
METADATA_EXAMPLE = '{"git_sha": "abc123", "training_cutoff": "2023-12-31"}'


def metadata_parse(text: str) -> dict:
    """Metadata sent as JSON text (a form or multipart field) -> the checked object."""
    text = (text or "").strip()
    if not text:
        return {}
    _size_check(len(text.encode("utf-8", "surrogatepass")))
    # Python's parser recurses once per level and fails past ~1000 of them: measured on the text first.
    _depth_check(_text_depth(text))
    try:
        value = json.loads(text, parse_constant=_constant_refuse, object_pairs_hook=_object_without_duplicates)
    except Rejected:
        raise
    except json.JSONDecodeError as error:
        raise _rejected(f"metadata is not valid JSON ({error.msg} at character {error.pos}).") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        reason = str(error).split(";")[0]  # the rest tells a Python programmer how to raise the limit
        raise _rejected(f"metadata holds a value that cannot be read ({reason}); send long numbers as text.") from None
    return metadata_check(value)


def metadata_check(value) -> dict:
    """The metadata object as it will be stored, or Rejected saying what to change."""
    if not isinstance(value, dict):
        raise _rejected(f"metadata must be a JSON object, e.g. {METADATA_EXAMPLE}.")
    _tree_check(value)
    # Measured as compact UTF-8, as sent; the canonical form escapes every non-ASCII character.
    _size_check(len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()))
    _training_cutoff_check(value.get(TRAINING_CUTOFF))
    return value


def metadata_canonical(value: dict) -> str:
    """One text for one object whatever its key order or spacing: what the fingerprint hashes.

    ASCII-only, so a value stored before these checks (a lone surrogate) still has one.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def request_fingerprint(*, benchmark_id, artifact_sha256: str, name: str, description: str, metadata: dict) -> str:
    """SHA-256 of what a submission request asks for; a repeated Idempotency-Key must bring the same.

    Kept on the row at creation, so an edit in the admin later does not change what the key stood for.
    """
    document = json.dumps(
        [str(benchmark_id), artifact_sha256, name, description, metadata_canonical(metadata)], ensure_ascii=True
    )
    return hashlib.sha256(document.encode()).hexdigest()


def _rejected(message: str) -> Rejected:
    return Rejected(message, field="metadata")


def _size_check(size: int) -> None:
    if size > MAX_METADATA_BYTES:
        raise _rejected(
            f"metadata is {size / 1024:.1f} KB of JSON; at most {MAX_METADATA_BYTES // 1024} KB are allowed."
        )


def _depth_check(depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise _rejected(f"metadata is nested {depth} levels deep; at most {MAX_METADATA_DEPTH} are allowed.")


def _text_depth(text: str) -> int:
    """How deep the objects and arrays of a JSON text nest, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _constant_refuse(name: str):
    raise _rejected(f"metadata holds {name}, which JSON does not allow; send a number, a string or null.")


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # A repeated key would silently keep only its last value.
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _rejected(f"metadata names the key {key[:MAX_METADATA_KEY_LENGTH]!r} twice in one object.")
        seen.add(key)
    return dict(pairs)


def _tree_check(value: dict) -> None:
    """Depth, key count, keys and every leaf, walked without recursion (a Python caller's object
    may be deeper than the interpreter's stack)."""
    pending = [(value, "metadata", 1)]
    keys = 0
    while pending:
        node, path, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise _rejected(
                f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep; "
                f"at most {MAX_METADATA_DEPTH} are allowed."
            )
        if isinstance(node, dict):
            keys += len(node)
            if keys > MAX_METADATA_KEYS:
                raise _rejected(
                    f"metadata has more than {MAX_METADATA_KEYS} keys in all; at most {MAX_METADATA_KEYS} are allowed."
                )
            for key in node:
                _key_check(key, path)
            children = [(item, f"{path}.{key}") for key, item in node.items()]
        else:
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node)]
        for item, item_path in children:
            if isinstance(item, (dict, list, tuple)):
                pending.append((item, item_path, depth + 1))
            else:
                _leaf_check(item, item_path)


def _key_check(key, path: str) -> None:
    if not isinstance(key, str):
        raise _rejected(f"{path} has the key {key!r}; metadata keys must be text.")
    if len(key) > MAX_METADATA_KEY_LENGTH:
        raise _rejected(
            f"{path} has a key of {len(key)} characters ({key[:20]!r}...); "
            f"at most {MAX_METADATA_KEY_LENGTH} are allowed."
        )
    _text_check(key, f"the key {key[:20]!r} of {path}")


def _leaf_check(item, path: str) -> None:
    if isinstance(item, str):
        _text_check(item, path)
    elif isinstance(item, float) and not math.isfinite(item):
        raise _rejected(f"{path} is {item}, not a finite number; JSON has no NaN or infinity.")
    elif item is not None and not isinstance(item, (bool, int, float)):
        raise _rejected(f"{path} is a {type(item).__name__}; metadata holds text, numbers, true/false and null.")


def _text_check(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _rejected(
            f"{where} holds {text[error.start]!r}, half of a UTF-16 surrogate pair, which is not a character; "
            "send valid Unicode."
        ) from None
    if "\x00" in text:
        raise _rejected(f"{where} holds a NUL character (\\u0000), which cannot be stored; remove it.")


def _training_cutoff_check(cutoff) -> None:
    if cutoff is None:  # not declared: decay uses the end of the benchmark's training split
        return
    if isinstance(cutoff, str) and ISO_DATE.fullmatch(cutoff):
        try:
            date.fromisoformat(cutoff)
            return
        except ValueError:
            pass
    raise _rejected(
        f"metadata.{TRAINING_CUTOFF} is {json.dumps(cutoff)[:40]}, not a date; give the last day of the model's "
        "training data as YYYY-MM-DD, e.g. 2023-12-31 (decay windows are placed relative to it)."
    )

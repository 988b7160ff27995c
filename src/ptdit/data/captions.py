"""Caption grammar of the procedural datasets: word lists, formatting, parsing and the vocabulary.

Captions are short, lower-case, punctuation-free and compositional, so that a word-level text encoder built
from `VOCABULARY` covers every prompt and the oracles (`ptdit.eval.oracle`) can read the targets back from the
text alone (generated samples come with nothing but their prompt).

Grammar (one line per dataset; `|` separates alternatives, `( ... )*` repeats):

    shapes:        OBJECT ( "and" OBJECT )*
                   OBJECT    := "a" SIZE COLOR SHAPE "at the" POSITION
    moving-shapes: MOVER ( "and" MOVER )*
                   MOVER     := "a" COLOR SHAPE "moving" DIRECTION
    turntable:     "a" COLOR KIND ( "with a" COLOR "top" )?

    SIZE      := small | large
    COLOR     := red | green | blue | yellow | magenta | white
    SHAPE     := circle | square | triangle
    POSITION  := top left | top | top right | left | center | right | bottom left | bottom | bottom right
    DIRECTION := left | right | up | down
    KIND      := cube | pyramid | tower

Examples: "a small red circle at the top left", "a large blue square at the center and a small green triangle
at the bottom right", "a yellow triangle moving up", "a red circle moving left and a blue square moving down",
"a red cube with a blue top", "a red cube" (one colour: the top colour equals the main colour, and a caption
never names a top colour equal to the main colour).

A single mover parses to the flat dict `{"color", "shape", "direction"}` (as the one-mover dataset has always
produced); several movers parse to `{"objects": [mover, ...]}`; `moving_objects(spec)` gives the list either way.

Parsed captions are plain dicts (`parse_caption`), and `format_caption(name, parse_caption(name, c)) == c` for
every caption the datasets produce.
"""

from __future__ import annotations

from typing import Any

# Palette: corners of the RGB cube, in [0, 1]. Neighbours differ by a full unit in at least one channel, so
# a colour survives blur and flat shading (classification divides by the brightest channel, see oracle.py).
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
# 3 x 3 grid in reading order; POSITIONS[3 * row + col].
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
KINDS: tuple[str, ...] = ("cube", "pyramid", "tower")

_GLUE_WORDS = ("a", "and", "at", "the", "moving", "with", "top")
VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {
            *_GLUE_WORDS,
            *COLORS,
            *SHAPES,
            *SIZES,
            *(w for p in POSITIONS for w in p.split()),
            *DIRECTIONS,
            *KINDS,
        }
    )
)


def moving_objects(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The movers of a "moving-shapes" spec as a list (a one-mover spec is the flat dict itself)."""
    return list(spec["objects"]) if "objects" in spec else [spec]


def format_caption(name: str, spec: dict[str, Any]) -> str:
    """Writes the caption of a parsed (or sampled) spec; the inverse of `parse_caption`.

    Args:
        name: dataset name ("shapes", "moving-shapes" or "turntable").
        spec: for "shapes" `{"objects": [{"size", "color", "shape", "position"}, ...]}`; for "moving-shapes"
            `{"color", "shape", "direction"}` or `{"objects": [{"color", "shape", "direction"}, ...]}`; for
            "turntable" `{"kind", "color", "top_color"}`. Extra keys (render-only parameters) are ignored.

    Returns:
        The caption string.
    """
    if name == "shapes":
        return " and ".join(f"a {o['size']} {o['color']} {o['shape']} at the {o['position']}" for o in spec["objects"])
    if name == "moving-shapes":
        return " and ".join(f"a {m['color']} {m['shape']} moving {m['direction']}" for m in moving_objects(spec))
    if name == "turntable":
        if spec["top_color"] == spec["color"]:
            return f"a {spec['color']} {spec['kind']}"
        return f"a {spec['color']} {spec['kind']} with a {spec['top_color']} top"
    raise ValueError(f"unknown dataset {name!r}; valid names: {list(_PARSERS)}")


def parse_caption(name: str, caption: str) -> dict[str, Any]:
    """Reads the attributes a caption asks for.

    Args:
        name: dataset name ("shapes", "moving-shapes" or "turntable").
        caption: a caption in that dataset's grammar (see the module docstring); extra whitespace is ignored.

    Returns:
        The spec dict described in `format_caption` (only the captioned keys).

    Raises:
        ValueError: unknown dataset name, or a caption that does not follow the grammar.
    """
    if name not in _PARSERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {list(_PARSERS)}")
    tokens = caption.split()
    try:
        return _PARSERS[name](tokens)
    except (IndexError, ValueError) as err:
        raise ValueError(f"cannot parse {name} caption {caption!r}: {err}") from None


# --------------------------------------------------------------------------------------------------------------
# Recursive-descent parsers over whitespace tokens
# --------------------------------------------------------------------------------------------------------------


def _expect(tokens: list[str], pos: int, word: str) -> int:
    if tokens[pos] != word:
        raise ValueError(f"expected {word!r} at word {pos}, got {tokens[pos]!r}")
    return pos + 1


def _choose(tokens: list[str], pos: int, options: tuple[str, ...] | dict[str, Any], what: str) -> tuple[str, int]:
    if tokens[pos] not in options:
        raise ValueError(f"expected a {what} at word {pos}, got {tokens[pos]!r}")
    return tokens[pos], pos + 1


def _position(tokens: list[str], pos: int) -> tuple[str, int]:
    # Greedy: "top left" wins over "top" when the next word completes a two-word position.
    if pos + 1 < len(tokens) and f"{tokens[pos]} {tokens[pos + 1]}" in POSITIONS:
        return f"{tokens[pos]} {tokens[pos + 1]}", pos + 2
    return _choose(tokens, pos, POSITIONS, "position")


def _end(tokens: list[str], pos: int) -> None:
    if pos != len(tokens):
        raise ValueError(f"unexpected trailing words {tokens[pos:]}")


def _parse_shapes(tokens: list[str]) -> dict[str, Any]:
    objects, pos = [], 0
    while True:
        pos = _expect(tokens, pos, "a")
        size, pos = _choose(tokens, pos, SIZES, "size")
        color, pos = _choose(tokens, pos, COLORS, "color")
        shape, pos = _choose(tokens, pos, SHAPES, "shape")
        pos = _expect(tokens, _expect(tokens, pos, "at"), "the")
        position, pos = _position(tokens, pos)
        objects.append({"size": size, "color": color, "shape": shape, "position": position})
        if pos == len(tokens):
            return {"objects": objects}
        pos = _expect(tokens, pos, "and")


def _parse_moving(tokens: list[str]) -> dict[str, Any]:
    movers, pos = [], 0
    while True:
        pos = _expect(tokens, pos, "a")
        color, pos = _choose(tokens, pos, COLORS, "color")
        shape, pos = _choose(tokens, pos, SHAPES, "shape")
        pos = _expect(tokens, pos, "moving")
        direction, pos = _choose(tokens, pos, DIRECTIONS, "direction")
        movers.append({"color": color, "shape": shape, "direction": direction})
        if pos == len(tokens):
            return movers[0] if len(movers) == 1 else {"objects": movers}
        pos = _expect(tokens, pos, "and")


def _parse_turntable(tokens: list[str]) -> dict[str, Any]:
    pos = _expect(tokens, 0, "a")
    color, pos = _choose(tokens, pos, COLORS, "color")
    kind, pos = _choose(tokens, pos, KINDS, "kind")
    if pos == len(tokens):  # one colour: "a red cube"
        return {"kind": kind, "color": color, "top_color": color}
    pos = _expect(tokens, pos, "with")
    pos = _expect(tokens, pos, "a")
    top_color, pos = _choose(tokens, pos, COLORS, "color")
    pos = _expect(tokens, pos, "top")
    _end(tokens, pos)
    if top_color == color:  # one spelling per object, so format_caption(parse_caption(c)) == c
        raise ValueError(f"a one-colour object is written 'a {color} {kind}', without 'with a {color} top'")
    return {"kind": kind, "color": color, "top_color": top_color}


_PARSERS = {"shapes": _parse_shapes, "moving-shapes": _parse_moving, "turntable": _parse_turntable}

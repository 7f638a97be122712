"""The CBV 2.0 "EPCIS event hash ID": one ID per event that any party computes alike.

``event_hash_id(event, context)`` → ``ni:///sha-256;<hex>?ver=CBV2.0``: the SHA-256 of
the event's *pre-hash string*, built as CBV 2.0 (section 8.9) describes:

1. ``eventType=<type>``, then the fields of the canonical order below, each as
   ``name=value`` (a structured field as its name followed by its children in their own
   canonical order); fields that are absent or empty add nothing; repeated elements
   (the EPCs of a list, the reports of a sensor element ...) are sorted as strings.
2. Values are canonical: times in UTC with milliseconds (``2026-01-01T10:00:00.000Z``),
   numbers without a leading ``+`` or trailing zeros (``6.0`` → ``6``), bare CBV words
   as their web-vocabulary URIs (``shipping`` → ``https://ref.gs1.org/cbv/BizStep-shipping``,
   ``Temperature`` → ``https://gs1.org/voc/Temperature``), ``urn:epcglobal:cbv:…`` as
   their web URIs, and a value ``p:rest`` whose prefix ``p`` the document's ``@context``
   declares as the namespace followed by ``rest``.
3. Everything else (user extensions, ``ilmd``, and, as GS1's reference implementation
   ``epcis-event-hash-generator`` 1.9 does, ``bizTransactionList``, ``sourceList`` and
   ``destinationList``) follows, sorted, with extension names as ``{namespace}local``.
   An extension inside a structured field follows that field's standard children.
   ``eventID``, ``recordTime`` and ``errorDeclaration`` are left out.
4. The UTF-8 string, joined without separators, is hashed with SHA-256.

Written from that description; tests/sharing checks every exported event's ID against
GS1's reference implementation. GS1 EPC URNs of the common schemes (``sgtin``,
``sscc``, ``sgln``, ``lgtin``) become their canonical GS1 Digital Link URIs
(``https://id.gs1.org/01/…/21/…``) as CBV 2.0 asks; other EPC schemes stay as they
are (docs/epcis.md), so a partner event that names objects so should carry its own
``eventID``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

#: The canonical order (field, its children's order or None for a plain value).
Order = Sequence[tuple[str, "Order | None"]]

_QUANTITY: Order = (("quantityElement", (("epcClass", None), ("quantity", None), ("uom", None))),)
_EPCS: Order = (("epc", None),)
_SENSOR_METADATA: Order = tuple(
    (n, None)
    for n in (
        "time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
        "dataProcessingMethod", "bizRules",
    )
)  # fmt: skip
_SENSOR_REPORT: Order = tuple(
    (n, None)
    for n in (
        "type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
        "time", "microorganism", "chemicalSubstance", "value", "component", "stringValue",
        "booleanValue", "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue",
        "sDev", "percRank", "percValue", "uom", "coordinateReferenceSystem",
    )
)  # fmt: skip
_SENSOR_ELEMENT: Order = (("sensorMetadata", _SENSOR_METADATA), ("sensorReport", _SENSOR_REPORT))
CANONICAL_ORDER: Order = (
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", _EPCS),
    ("inputEPCList", _EPCS),
    ("childEPCs", _EPCS),
    ("quantityList", _QUANTITY),
    ("childQuantityList", _QUANTITY),
    ("inputQuantityList", _QUANTITY),
    ("outputEPCList", _EPCS),
    ("outputQuantityList", _QUANTITY),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)),
    ("bizLocation", (("id", None),)),
    (
        "sensorElementList",
        (
            (
                "sensorElement",
                (("sensorMetadata", _SENSOR_METADATA), ("sensorReport", _SENSOR_REPORT)),
            ),
        ),
    ),
)

#: Left out of the pre-hash string.
IGNORED = frozenset({"type", "eventID", "recordTime", "errorDeclaration"})
#: Lists whose entries keep their own order of (type, value).
_TYPED_LISTS = {"bizTransactionList": "bizTransaction", "sourceList": "source",
                "destinationList": "destination"}  # fmt: skip
#: List names whose entries are not ``name[:-4]``.
_ENTRY_NAMES = {
    "quantityList": "quantityElement",
    "childQuantityList": "quantityElement",
    "inputQuantityList": "quantityElement",
    "outputQuantityList": "quantityElement",
    "inputEPCList": "epc",
    "outputEPCList": "epc",
}

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"
#: Bare CBV words: the field (by its path's last names) → its vocabulary's URI prefix.
_BARE_WORDS = {
    ("bizStep",): CBV + "BizStep-",
    ("disposition",): CBV + "Disp-",
    ("persistentDisposition", "set"): CBV + "Disp-",
    ("persistentDisposition", "unset"): CBV + "Disp-",
    ("bizTransactionList", "type"): CBV + "BTT-",
    ("sourceList", "type"): CBV + "SDT-",
    ("destinationList", "type"): CBV + "SDT-",
    ("sensorReport", "type"): GS1_VOC,
    ("sensorReport", "exception"): GS1_VOC,
}
_URNS = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


DIGITAL_LINK = "https://id.gs1.org"


def _check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit of ``digits`` (weights 3, 1, 3 … from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def _dl_part(text: str) -> str:
    return quote(unquote(text), safe="")


def digital_link(urn: str) -> str | None:
    """The canonical GS1 Digital Link URI of an EPC URN (sgtin, sscc, sgln, lgtin), or None."""
    for prefix in ("urn:epc:id:", "urn:epc:class:"):
        if urn.startswith(prefix):
            scheme, sep, body = urn[len(prefix) :].partition(":")
            break
    else:
        return None
    parts = body.split(".")
    if not sep or not all(p.isdigit() for p in parts[:2]) or len(parts) < 2:
        return None
    cp, ref = parts[0], parts[1]
    if scheme in ("sgtin", "lgtin") and len(parts) == 3 and len(cp) + len(ref) == 13:
        gtin = ref[0] + cp + ref[1:]
        ai = "21" if scheme == "sgtin" else "10"
        return f"{DIGITAL_LINK}/01/{gtin}{_check_digit(gtin)}/{ai}/{_dl_part(parts[2])}"
    if scheme == "sscc" and len(parts) == 2 and len(cp) + len(ref) == 17:
        sscc = ref[0] + cp + ref[1:]
        return f"{DIGITAL_LINK}/00/{sscc}{_check_digit(sscc)}"
    if scheme == "sgln" and len(parts) == 3 and len(cp) + len(ref) == 12:
        gln = cp + ref + _check_digit(cp + ref)
        ext = "" if parts[2] == "0" else f"/254/{_dl_part(parts[2])}"
        return f"{DIGITAL_LINK}/414/{gln}{ext}"
    return None


@dataclass
class _Node:
    name: str
    value: str = ""
    children: list[_Node] = field(default_factory=list)
    #: A (type, id) entry of a typed list: rendered in its own order, never sorted.
    typed: bool = False


def namespaces(context: Any) -> dict[str, str]:
    """Prefix → namespace IRI, from the objects of a JSON-LD ``@context``."""
    items = context if isinstance(context, list) else [context]
    return {
        str(k): str(v)
        for item in items
        if isinstance(item, Mapping)
        for k, v in item.items()
        if isinstance(v, str)
    }


def _number(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return repr(float(value))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    return "" if value is None else str(value)


def _time(text: str) -> str:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Builder:
    def __init__(self, ns: Mapping[str, str]) -> None:
        self.ns = ns

    def name(self, key: str) -> str:
        prefix, sep, local = key.partition(":")
        if sep and prefix in self.ns:
            return "{" + self.ns[prefix] + "}" + local
        return key

    def value(self, path: tuple[str, ...], raw: Any) -> str:
        if isinstance(raw, bool | int | float):
            return _scalar(raw)
        text = _scalar(raw).strip()
        if not text:
            return ""
        if "time" in path[-1].lower() and "offset" not in path[-1].lower():
            try:
                return _time(text)
            except ValueError:
                return text
        for urn, uri in _URNS:
            if text.startswith(urn):
                return uri + text[len(urn) :]
        link = digital_link(text)
        if link is not None:
            return link
        if _NUMBER.fullmatch(text):
            return _number(float(text))
        prefix, sep, rest = text.partition(":")
        if sep and prefix in self.ns:
            return self.ns[prefix] + rest
        if _BARE.fullmatch(text):
            for tail, uri in _BARE_WORDS.items():
                if path[-len(tail) :] == tail:
                    return uri + text
        return text

    def nodes(self, path: tuple[str, ...], key: str, raw: Any) -> list[_Node]:
        """The nodes one JSON member becomes (a list: one node per entry, or one list node)."""
        name = self.name(key)
        here = (*path, name)
        if isinstance(raw, Mapping):
            return [_Node(name, "", self.members(here, raw))]
        if isinstance(raw, list):
            if name in _TYPED_LISTS:
                entries = [
                    _Node("", "", self._typed(here, e, _TYPED_LISTS[name]), typed=True)
                    for e in raw
                    if isinstance(e, Mapping)
                ]
                return [_Node(name, "", entries)]
            if name.endswith("List") or name == "childEPCs":
                entry = _ENTRY_NAMES.get(name, "epc" if name == "childEPCs" else name[:-4])
                return [_Node(name, "", [n for e in raw for n in self.nodes(here, entry, e)])]
            return [n for e in raw for n in self.nodes(path, key, e)]
        return [_Node(name, self.value(here, raw))]

    def _typed(self, path: tuple[str, ...], entry: Mapping[str, Any], id_key: str) -> list[_Node]:
        out = [_Node("type", self.value((*path, "type"), entry["type"]))] if "type" in entry else []
        if id_key in entry:
            out.append(_Node(id_key, self.value((*path, id_key), entry[id_key])))
        return out

    def members(self, path: tuple[str, ...], obj: Mapping[str, Any]) -> list[_Node]:
        return [n for k, v in obj.items() for n in self.nodes(path, str(k), v)]


def _render(node: _Node, order: Order | None, consumed: set[int]) -> str:
    text = "=" + node.value if node.value else ""
    inner = _ordered(node.children, order, consumed, top=False) if order else ""
    if not node.children or all(id(c) in consumed for c in node.children):
        consumed.add(id(node))
    return node.name + text + inner if text or inner else ""


def _ordered(children: list[_Node], order: Order, consumed: set[int], *, top: bool) -> str:
    out: list[str] = []
    for name, sub in order:
        parts = [_render(c, sub, consumed) for c in children if c.name == name]
        out.extend(sorted(p for p in parts if p))
    if not top:  # an extension inside a field follows that field's standard children
        extensions = [c for c in children if c.name.startswith("{") and id(c) not in consumed]
        out.append(_generic(extensions, consumed))
        consumed.update(id(c) for c in extensions)
    return "".join(out)


def _residue(node: _Node, consumed: set[int]) -> _Node | None:
    if id(node) in consumed:
        return None
    kept = [r for c in node.children if (r := _residue(c, consumed)) is not None]
    if node.children and not kept:
        return None
    return _Node(node.name, node.value, kept, node.typed)


def _generic(nodes: list[_Node], consumed: set[int]) -> str:
    parts = []
    for n in nodes:
        if n.typed:  # (type, id) in that order
            parts.append("".join(f"{c.name}={c.value}" for c in n.children if c.value))
        else:
            parts.append(
                n.name + ("=" + n.value if n.value else "") + _generic(n.children, consumed)
            )
    if not any(n.name in _TYPED_LISTS.values() for n in nodes):
        parts.sort()
    return "".join(parts)


def pre_hash_string(event: Mapping[str, Any], context: Any = None) -> str:
    """The event's canonical pre-hash string (the module's docstring says how)."""
    builder = _Builder(namespaces(context if context is not None else event.get("@context")))
    children = builder.members((), {k: v for k, v in event.items() if k != "@context"})
    consumed: set[int] = set()
    head = "eventType=" + str(event.get("type", ""))
    ordered = _ordered(children, CANONICAL_ORDER, consumed, top=True)
    rest = [r for c in children if c.name not in IGNORED and (r := _residue(c, consumed))]
    return head + ordered + _generic(rest, consumed)


def event_hash_id(event: Mapping[str, Any], context: Any = None) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of ``event`` (``context``: the document's
    ``@context``, for the prefixes of extension fields)."""
    digest = hashlib.sha256(pre_hash_string(event, context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"

"""The signed reading: EIP-712 digest, signatures, wire format, Merkle proofs."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.core.errors import WireError
from backend.telemetry import (
    Domain,
    MerkleTree,
    Reading,
    SignedReading,
    decode_message,
    device_address,
    encode_message,
    leaf_hash,
    parse_topic,
    reading_digest,
    recover_device,
    sign_reading,
    telemetry_topic,
    verify_proof,
)
from backend.telemetry.eip712 import recover_from_digest
from backend.telemetry.reading import EIP712_TYPES, FIELD_RANGES, READING_FIELDS
from testkit.readings import SAMPLE

KEY = bytes.fromhex("aa" * 32)
OTHER_KEY = bytes.fromhex("bb" * 32)
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def field(name: str) -> st.SearchStrategy[int]:
    lo, hi = FIELD_RANGES[name]
    return st.integers(lo, hi)


readings = st.builds(
    lambda *v: Reading(*v),
    *(field(name) for name in READING_FIELDS),
)


def make_reading(**overrides: int) -> Reading:
    return Reading(**{**SAMPLE.values(), **overrides})


def signed(reading: Reading, key: bytes = KEY) -> SignedReading:
    return SignedReading(reading, device_address(key), sign_reading(reading, DOMAIN, key))


def eth_account_message(reading: Reading, domain: Domain):
    return encode_typed_data(
        domain_data=domain.typed_data(),
        message_types={"Reading": [{"name": n, "type": t} for n, t in EIP712_TYPES]},
        message_data=reading.to_wire(),
    )


@settings(max_examples=150, deadline=None)
@given(
    reading=readings, chain_id=st.integers(1, 2**64), contract=st.binary(min_size=20, max_size=20)
)
def test_digest_and_signature_match_eth_account_byte_for_byte(reading, chain_id, contract):
    domain = Domain(chain_id, Account.create().address[:2] + contract.hex())
    msg = eth_account_message(reading, domain)
    ours = sign_reading(reading, domain, KEY)
    theirs = Account.sign_message(msg, KEY)
    assert ours == bytes(theirs.signature)
    assert reading_digest(reading, domain) == bytes(theirs.message_hash)
    assert recover_device(reading, domain, ours) == Account.from_key(KEY).address


def test_signature_binds_every_field_and_the_domain():
    reading = make_reading()
    sig = sign_reading(reading, DOMAIN, KEY)
    device = device_address(KEY)
    for name in READING_FIELDS:
        lo, hi = FIELD_RANGES[name]
        wire = reading.to_wire()
        wire[name] = wire[name] + 1 if wire[name] < hi else wire[name] - 1
        assert recover_device(Reading.from_wire(wire), DOMAIN, sig) != device, name
    other_domain = Domain(1, DOMAIN.verifying_contract)
    assert recover_device(reading, other_domain, sig) != device


def test_malleable_and_malformed_signatures_are_refused():
    reading = make_reading()
    digest = reading_digest(reading, DOMAIN)
    sig = sign_reading(reading, DOMAIN, KEY)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sig[32:64], "big")
    high_s = sig[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    with pytest.raises(WireError) as exc:
        recover_from_digest(digest, high_s)
    assert exc.value.reason == "bad_signature"
    with pytest.raises(WireError) as exc:
        recover_from_digest(digest, sig[:64] + bytes([1]))
    assert exc.value.reason == "bad_signature"
    with pytest.raises(WireError) as exc:
        recover_from_digest(digest, sig[:64])
    assert exc.value.reason == "bad_signature_format"


def test_wire_round_trip_and_topic():
    sr = signed(make_reading())
    topic = telemetry_topic(7, sr.device)
    assert parse_topic(topic) == (7, sr.device, "telemetry")
    assert decode_message(encode_message(sr), topic) == sr
    assert b"." not in encode_message(sr)  # integers only, no floats on the wire


def mutate(payload: bytes, **changes) -> bytes:
    body = json.loads(payload)
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body).encode()


GOOD = encode_message(signed(make_reading()))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[1, 2]", "malformed_json"),
        (b'{"seq": NaN}', "malformed_json"),
        (b"x" * 2000, "oversized"),
        (mutate(GOOD, seq=...), "missing_field"),
        (mutate(GOOD, battery=90), "extra_field"),
        (mutate(GOOD, v=2), "bad_version"),
        (mutate(GOOD, temperatureCentiC=4.25), "bad_type"),
        (mutate(GOOD, seq="1"), "bad_type"),
        (mutate(GOOD, flags=True), "bad_type"),
        (mutate(GOOD, seq=2**32), "out_of_range"),
        (mutate(GOOD, latitudeE6=90_000_001), "out_of_range"),
        (mutate(GOOD, humidityPermille=-1), "out_of_range"),
        (mutate(GOOD, device="0xabc"), "bad_device"),
        (mutate(GOOD, device=device_address(KEY).lower()), "bad_device"),
        (mutate(GOOD, signature="0x1234"), "bad_signature_format"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(WireError) as exc:
        decode_message(payload)
    assert exc.value.reason == reason
    assert str(exc.value)  # a message a person can read


def _with_repeated(payload: bytes, key: str, value: object) -> bytes:
    """``payload`` with ``key`` given a second time (``value``), as raw JSON text."""
    return payload[:-1] + b"," + json.dumps({key: value})[1:-1].encode() + b"}"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (GOOD.decode().encode("utf-16"), "not_utf8"),  # with its BOM
        (GOOD.decode().encode("utf-16-le"), "not_utf8"),
        (GOOD.decode().encode("utf-16-be"), "not_utf8"),
        (json.dumps({"v": 1, "seq": 3}).encode("utf-32"), "not_utf8"),  # GOOD is too long
        (b"\xef\xbb\xbf" + GOOD, "utf8_bom"),
        (GOOD.decode().encode("utf-8-sig"), "utf8_bom"),
        (_with_repeated(GOOD, "temperatureCentiC", 1200), "duplicate_field"),
        (_with_repeated(GOOD, "seq", json.loads(GOOD)["seq"]), "duplicate_field"),  # same value
        (_with_repeated(GOOD, "device", device_address(OTHER_KEY)), "duplicate_field"),
    ],
    ids=["utf16-bom", "utf16le", "utf16be", "utf32", "bom", "utf8-sig",
         "dup-temperature", "dup-seq-same-value", "dup-device"],
)  # fmt: skip
def test_only_utf8_json_with_distinct_keys_is_accepted(payload, reason):
    """Python's json.loads takes UTF-16/UTF-32 bytes, strips a UTF-8 BOM and keeps the last
    of a repeated key: the oracle stored all of these (issue 8, finding 6)."""
    json.loads(payload)  # the stock parser takes every one of them
    with pytest.raises(WireError) as exc:
        decode_message(payload)
    assert exc.value.reason == reason
    assert str(exc.value)


def test_bytes_that_are_not_utf8_are_refused_as_such():
    latin1 = GOOD[:-1] + ',"x":"\xe9"}'.encode("latin-1")
    with pytest.raises(WireError, match=r"not UTF-8 \(invalid continuation byte at byte") as exc:
        decode_message(latin1)
    assert exc.value.reason == "not_utf8"


def test_a_topic_with_a_trailing_newline_is_not_a_trustship_topic():
    sr = signed(make_reading())
    with pytest.raises(WireError) as exc:
        decode_message(encode_message(sr), telemetry_topic(7, sr.device) + "\n")
    assert exc.value.reason == "bad_topic"


def test_topic_must_agree_with_payload():
    sr = signed(make_reading())
    other = device_address(OTHER_KEY)
    for topic in (telemetry_topic(8, sr.device), telemetry_topic(7, other)):
        with pytest.raises(WireError) as exc:
            decode_message(encode_message(sr), topic)
        assert exc.value.reason == "topic_mismatch"
    with pytest.raises(WireError) as exc:
        decode_message(encode_message(sr), "trustship/v1/orders/7/devices/nope/telemetry")
    assert exc.value.reason == "bad_topic"


@settings(max_examples=60, deadline=None)
@given(digests=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_every_merkle_proof_verifies_and_only_for_its_leaf(digests):
    tree = MerkleTree.from_digests(digests)
    leaves = [leaf_hash(d) for d in digests]
    for i, leaf in enumerate(leaves):
        proof = tree.proof(i)
        assert verify_proof(proof, tree.root, leaf)
        assert len(proof) <= max(1, len(digests) - 1).bit_length()
        j = (i + 1) % len(leaves)
        if leaves[j] != leaf:
            assert not verify_proof(proof, tree.root, leaves[j])

"""The Linky TIC decoder: real captures decode, every kind of line damage is rejected with its reason."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from devices.reading import BAD_VALUE, CHECKSUM, MISSING_FIELD, TRUNCATED, Reading, Rejected
from devices.tic import (
    BAUDRATE,
    HISTORIC,
    MAX_FRAME,
    STANDARD,
    TicDecoder,
    checksum,
    frame,
    group,
    historic_frame,
    horodate,
    parse_frame,
    standard_frame,
)

PARIS_SUMMER = dt.timezone(dt.timedelta(hours=2))
PARIS_WINTER = dt.timezone(dt.timedelta(hours=1))


def wire(lines: list[str]) -> bytes:
    """A frame from captured group lines (as logged: no LF/CR), checksums left as captured."""
    return b"\x02" + b"".join(b"\n" + line.encode("latin-1") + b"\r" for line in lines) + b"\x03"


def inner(raw: bytes) -> bytes:
    """What parse_frame takes: the bytes between STX and ETX."""
    assert raw[:1] == b"\x02" and raw[-1:] == b"\x03"
    return raw[1:-1]


def key(item: Reading | Rejected) -> object:
    """Readings compare by value; Rejected (an exception) by its reason."""
    return item if isinstance(item, Reading) else ("rejected", item.reason)


def reasons(items: list[Reading | Rejected]) -> list[object]:
    return [key(i) for i in items]


def rejected_reason(raw: bytes, mode: str) -> str:
    with pytest.raises(Rejected) as exc:
        parse_frame(inner(raw), mode)
    return exc.value.reason


# A historic single-phase HC/HP frame captured from a real Linky (hallard/teleinfo-test README).
# Two of its checksums are spaces.
REAL_HISTORIC = [
    "ADCO 021528603314 :",
    "OPTARIF HC.. <",
    "ISOUSC 15 <",
    "HCHC 000723392  ",
    "HCHP 001742220 %",
    "PTEC HP..  ",
    "IINST 001 X",
    "IMAX 002 A",
    "PAPP 00190 +",
    "HHPHC A ,",
    "MOTDETAT 000000 B",
]
REAL_HISTORIC_READING = Reading(
    apparent_va=190.0,
    energy_wh=723392.0 + 1742220.0,
    max_power_w=15 * 200.0,
    meter_id="021528603314",
)

# A standard single-phase frame captured from a real Linky (fmartinou/teleinfo2mqtt
# test/standard.frames.log).  SMAXSN-1 comes twice, the second with a space checksum.
REAL_STANDARD = [
    "ADSC\t031764953443\t>",
    "NGTF\tH PLEINE/CREUSE \t\\",
    "LTARF\t HEURE  PLEINE  \tA",
    "EAST\t080490250\t+",
    "VTIC\t02\tJ",
    "DATE\tH250307134350\t\tB",
    "EASF01\t041733418\tA",
    "EASF02\t038756832\tM",
    "EASF03\t000000000\t$",
    "EASF04\t000000000\t%",
    "EASF05\t000000000\t&",
    "EASF06\t000000000\t'",
    "EASF07\t000000000\t(",
    "EASF08\t000000000\t)",
    "EASF09\t000000000\t*",
    'EASF10\t000000000\t"',
    "EASD01\t038108370\t>",
    "EASD02\t036224554\t@",
    "EASD03\t003625048\t>",
    "EASD04\t002532278\t@",
    "EAIT\t003626872\t'",
    "ERQ1\t002101552\tK",
    "ERQ2\t001604670\tT",
    "ERQ3\t000017300\tH",
    "ERQ4\t005446257\t_",
    "IRMS1\t007\t5",
    "URMS1\t236\tE",
    "PREF\t12\tB",
    "PCOUP\t12\t\\",
    "SINSTS\t00000\tF",
    "SMAXSN\tH250307060708\t09835\tL",
    "SMAXSN-1\tH250306072928\t12717\t)",
    "SINSTI\t01678\tR",
    "SMAXIN\tH250307114403\t04203\t*",
    "SMAXSN-1\tH250316044335\t06731\t ",
    "CCASN\tH250307133000\t00000\t3",
    "CCASN-1\tH250307131500\t00000\tT",
    "CCAIN\tH250307133000\t03040\t0",
    "CCAIN-1\tH250307130000\t02976\t\\",
    "UMOY1\tH250307134000\t237\t3",
    "STGE\t003AC701\tT",
    "MSG1\tPAS DE          MESSAGE         \t<",
    "PRM\t14405933300802\t+",
    "RELAIS\t000\tB",
    "NTARF\t02\tO",
    "NJOURF\t00\t&",
    "NJOURF+1\t00\tB",
    "PJOURF+1\t00008002 0210C001 08108002 1440C001 16408002 NONUTILE NONUTILE NONUTILE NONUTILE NONUTILE NONUTILE\t^",
]
REAL_STANDARD_READING = Reading(
    apparent_va=0.0,
    energy_wh=80490250.0,
    max_power_w=12000.0,
    time=dt.datetime(2025, 3, 7, 13, 43, 50, tzinfo=PARIS_WINTER).timestamp(),
    meter_id="031764953443",
)

T_SUMMER = dt.datetime(2026, 6, 30, 14, 0, 0, tzinfo=dt.UTC).timestamp()
T_WINTER = dt.datetime(2026, 1, 15, 12, 30, 5, tzinfo=dt.UTC).timestamp()


def good_historic(papp: int = 1230) -> bytes:
    return historic_frame(adco="021528603314", papp_va=papp, index_wh=12_345_678, isousc_a=30)


def good_standard(sinsts: int = 1520) -> bytes:
    return standard_frame(adsc="031764953443", sinsts_va=sinsts, east_wh=80_490_250, t=T_SUMMER)


# ---- checksums and builders -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"IINST 001", b"X"),
        (b"PTEC HP..", b" "),
        (b"SINSTS\t00000\t", b"F"),
        (b"DATE\tH250307134349\t\t", b"J"),
        (b"SMAXSN\tH250307060708\t09835\t", b"L"),
    ],
)
def test_worked_checksums(body, expected):
    assert checksum(body) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("IINST", "001", HISTORIC), b"\nIINST 001 X\r"),
        (("PTEC", "HP..", HISTORIC), b"\nPTEC HP..  \r"),  # the checksum is the second space
        (("SINSTS", "00000", STANDARD), b"\nSINSTS\t00000\tF\r"),
        (("DATE", "", STANDARD, "H250307134349"), b"\nDATE\tH250307134349\t\tJ\r"),
        (("SMAXSN", "09835", STANDARD, "H250307060708"), b"\nSMAXSN\tH250307060708\t09835\tL\r"),
        (("NGTF", "H PLEINE/CREUSE ", STANDARD), b"\nNGTF\tH PLEINE/CREUSE \t\\\r"),
    ],
)
def test_group_matches_the_worked_examples(args, expected):
    assert group(*args) == expected


def test_builders_reproduce_the_real_captures_byte_for_byte():
    # The real captures' groups the builders also send: built and captured bytes agree.
    built = historic_frame(
        adco="021528603314", papp_va=190, index_wh={"HCHC": 723392, "HCHP": 1742220}, isousc_a=15, ptec="HP.."
    )
    for line in REAL_HISTORIC:
        if not line.startswith("IMAX"):  # the builder sends IMAX 090
            assert b"\n" + line.encode() + b"\r" in built
    std = standard_frame(adsc="031764953443", sinsts_va=0, east_wh=80490250, t=T_WINTER, pref_kva=12)
    for line in (
        "ADSC\t031764953443\t>",
        "EAST\t080490250\t+",
        "PREF\t12\tB",
        "PCOUP\t12\t\\",
        "SINSTS\t00000\tF",
    ):
        assert b"\n" + line.encode() + b"\r" in std
    # 'IINST 001' sums to 568; with HT (9) for SP (32) and a final HT: 554, & 0x3F = 42 -> 'J'.
    assert frame([("IINST", "001"), ("DATE", "H250307134349", "")], STANDARD) == (
        b"\x02\nIINST\t001\tJ\r\nDATE\tH250307134349\t\tJ\r\x03"
    )


def test_builders_refuse_what_no_meter_sends():
    with pytest.raises(ValueError, match="5 digits"):
        historic_frame(adco="1", papp_va=100_000, index_wh=0)
    with pytest.raises(ValueError, match="9 digits"):
        standard_frame(adsc="1", sinsts_va=0, east_wh=10**9, t=T_SUMMER)
    with pytest.raises(ValueError, match="separator"):
        group("NGTF", "A\tB", STANDARD)
    with pytest.raises(ValueError, match="horodate"):
        group("DATE", "", HISTORIC, horodate="H250307134349")
    with pytest.raises(ValueError, match="mode"):
        group("PAPP", "00100", "fast")


def test_baudrates():
    assert BAUDRATE == {HISTORIC: 1200, STANDARD: 9600}


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (dt.datetime(2026, 6, 30, 10, 0, 0, tzinfo=dt.UTC), "E260630120000"),
        (dt.datetime(2026, 1, 15, 12, 30, 5, tzinfo=dt.UTC), "H260115133005"),
        (dt.datetime(2026, 3, 29, 0, 59, 59, tzinfo=dt.UTC), "H260329015959"),  # the last winter second
        (dt.datetime(2026, 3, 29, 1, 0, 0, tzinfo=dt.UTC), "E260329030000"),
        (dt.datetime(2026, 10, 25, 0, 30, 0, tzinfo=dt.UTC), "E261025023000"),  # 02:30 happens twice:
        (dt.datetime(2026, 10, 25, 1, 30, 0, tzinfo=dt.UTC), "H261025023000"),  # the season tells them apart
    ],
)
def test_horodate_and_its_round_trip_through_a_frame(utc, expected):
    t = utc.timestamp()
    assert horodate(t) == expected
    raw = standard_frame(adsc="031764953443", sinsts_va=500, east_wh=1000, t=t)
    assert f"\nDATE\t{expected}\t\t".encode() in raw
    assert parse_frame(inner(raw), STANDARD).time == t


def test_horodate_drops_fractions_of_a_second():
    assert horodate(T_SUMMER + 0.9) == horodate(T_SUMMER)


# ---- good frames -----------------------------------------------------------------------


def test_real_historic_capture_decodes():
    assert parse_frame(inner(wire(REAL_HISTORIC)), HISTORIC) == REAL_HISTORIC_READING


def test_real_standard_capture_decodes():
    assert parse_frame(inner(wire(REAL_STANDARD)), STANDARD) == REAL_STANDARD_READING


def test_historic_base_frame():
    got = parse_frame(inner(good_historic(papp=1230)), HISTORIC)
    assert got == Reading(
        apparent_va=1230.0, energy_wh=12_345_678.0, max_power_w=6000.0, meter_id="021528603314"
    )
    assert got.power_w is None and got.time is None


@pytest.mark.parametrize(
    ("indexes", "optarif"),
    [
        ({"HCHC": 1_000_111, "HCHP": 2_000_222}, b"HC.."),
        ({"EJPHN": 5_000, "EJPHPM": 70}, b"EJP."),
        (
            {
                "BBRHCJB": 1,
                "BBRHPJB": 10,
                "BBRHCJW": 100,
                "BBRHPJW": 1000,
                "BBRHCJR": 10_000,
                "BBRHPJR": 100_000,
            },
            b"BBR(",
        ),
    ],
)
def test_historic_multi_index_tariffs_sum_every_index(indexes, optarif):
    raw = historic_frame(adco="021528603314", papp_va=2500, index_wh=indexes, isousc_a=45, ptec="HP..")
    assert b"\nOPTARIF " + optarif + b" " in raw
    got = parse_frame(inner(raw), HISTORIC)
    assert got == Reading(
        apparent_va=2500.0,
        energy_wh=float(sum(indexes.values())),
        max_power_w=9000.0,
        meter_id="021528603314",
    )


@pytest.mark.parametrize(("t", "season"), [(T_SUMMER, b"E"), (T_WINTER, b"H")])
def test_standard_frame(t, season):
    raw = standard_frame(adsc="031764953443", sinsts_va=1520, east_wh=80_490_250, t=t, pref_kva=9)
    assert b"\nDATE\t" + season in raw
    assert parse_frame(inner(raw), STANDARD) == Reading(
        apparent_va=1520.0, energy_wh=80_490_250.0, max_power_w=9000.0, time=t, meter_id="031764953443"
    )


def test_standard_prefers_pcoup_over_pref():
    raw = standard_frame(adsc="1", sinsts_va=100, east_wh=1, t=T_SUMMER, pref_kva=9, pcoup_kva=6)
    assert parse_frame(inner(raw), STANDARD).max_power_w == 6000.0
    only_pref = frame([("PREF", "12"), ("SINSTS", "00100"), ("EAST", "000000001")], STANDARD)
    assert parse_frame(inner(only_pref), STANDARD).max_power_w == 12000.0
    neither = frame([("SINSTS", "00100"), ("EAST", "000000001")], STANDARD)
    assert parse_frame(inner(neither), STANDARD) == Reading(apparent_va=100.0, energy_wh=1.0)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("e260630120000", dt.datetime(2026, 6, 30, 12, tzinfo=PARIS_SUMMER).timestamp()),
        ("h260115120000", dt.datetime(2026, 1, 15, 12, tzinfo=PARIS_WINTER).timestamp()),
        (" 260630120000", None),  # unknown season: no usable time, the frame still counts
    ],
)
def test_lowercase_and_unknown_seasons(stamp, expected):
    raw = frame([("DATE", stamp, ""), ("SINSTS", "00420"), ("EAST", "000001000")], STANDARD)
    got = parse_frame(inner(raw), STANDARD)
    assert (got.time, got.apparent_va, got.energy_wh) == (expected, 420.0, 1000.0)


@pytest.mark.parametrize("stamp", ["X260630120000", "E261330120000", "E2606301200", "E26063012000A"])
def test_malformed_horodate_is_a_bad_value(stamp):
    raw = frame([("DATE", stamp, ""), ("SINSTS", "00420"), ("EAST", "000001000")], STANDARD)
    assert rejected_reason(raw, STANDARD) == BAD_VALUE


def test_the_checksum_can_be_a_space():
    raw = historic_frame(adco="021528603314", papp_va=800, index_wh=42, ptec="HP..")
    assert b"\nPTEC HP..  \r" in raw
    assert [r.apparent_va for r in TicDecoder(HISTORIC).feed(raw) if isinstance(r, Reading)] == [800.0]
    # In standard mode too (the real capture's second SMAXSN-1).
    assert b"\t06731\t \r" in wire(REAL_STANDARD)
    assert TicDecoder(STANDARD).feed(wire(REAL_STANDARD)) == [REAL_STANDARD_READING]


def test_standard_data_with_inner_spaces_is_accepted():
    raw = frame(
        [
            ("NGTF", "H PLEINE/CREUSE "),
            ("LTARF", " HEURE  PLEINE  "),
            ("MSG1", "PAS DE          MESSAGE         "),
            ("SINSTS", "00300"),
            ("EAST", "000000500"),
        ],
        STANDARD,
    )
    assert b"\nNGTF\tH PLEINE/CREUSE \t\\\r" in raw  # the captured group, checksum included
    assert parse_frame(inner(raw), STANDARD) == Reading(apparent_va=300.0, energy_wh=500.0)


def test_parity_bit_read_as_bit_7_is_masked_off():
    # A 7E1 line opened as 8N1 shows the parity bit as bit 7 of every other byte.
    raw = good_historic()
    parity = bytes(b | 0x80 if bin(b).count("1") % 2 else b for b in raw)
    assert parity != raw
    assert TicDecoder(HISTORIC).feed(parity) == [parse_frame(inner(raw), HISTORIC)]


def test_three_phase_short_frame_is_not_a_fault():
    short = frame(
        [("ADIR1", "041"), ("ADCO", "021528603314"), ("IINST1", "041"), ("IINST2", "012"), ("IINST3", "000")],
        HISTORIC,
    )
    assert parse_frame(inner(short), HISTORIC) == Reading(meter_id="021528603314")
    assert TicDecoder(HISTORIC).feed(short + good_historic(700) + short) == [
        parse_frame(inner(good_historic(700)), HISTORIC)
    ]


# ---- damaged frames --------------------------------------------------------------------


def _group_spans(raw: bytes) -> list[tuple[int, int]]:
    """(LF index, CR index) of each group of a built frame."""
    spans, pos = [], 1
    while raw[pos] == 0x0A:
        end = raw.index(b"\r", pos)
        spans.append((pos, end))
        pos = end + 1
    return spans


@pytest.mark.parametrize("mode", [HISTORIC, STANDARD])
def test_a_wrong_checksum_in_any_group_rejects_the_frame(mode):
    raw = good_historic() if mode == HISTORIC else good_standard()
    spans = _group_spans(raw)
    assert len(spans) >= 10
    for _, cr in spans:
        chk = raw[cr - 1]
        wrong = 0x20 + ((chk - 0x20 + 1) & 0x3F)
        damaged = raw[: cr - 1] + bytes([wrong]) + raw[cr:]
        assert rejected_reason(damaged, mode) == CHECKSUM, damaged[cr - 20 : cr + 1]


def test_real_damaged_groups():
    # esphome/issues#4690: an 8-digit EASD02 whose checksum would be '>' arrived with '%'.
    damaged = REAL_STANDARD.copy()
    damaged[damaged.index("EASD02\t036224554\t@")] = "EASD02\t00134230\t%"
    assert rejected_reason(wire(damaged), STANDARD) == CHECKSUM
    # fmartinou's log: bytes lost or merged inside a group, so it cannot be cut into fields.
    for garbled in ("IRMS1\t:K5", "CCAINKlBJ+:J02976\t\\"):
        damaged = REAL_STANDARD.copy()
        damaged[25] = garbled
        assert rejected_reason(wire(damaged), STANDARD) == TRUNCATED


def test_a_digit_turned_into_a_space():
    hist = good_historic().replace(b"\nBASE 012345678 ", b"\nBASE 0123 5678 ")
    assert rejected_reason(hist, HISTORIC) == CHECKSUM
    std = good_standard().replace(b"\nEAST\t080490250\t", b"\nEAST\t0804 0250\t")
    assert rejected_reason(std, STANDARD) == CHECKSUM


def test_high_bit_garbled_bytes():
    # hekmon/linkytic#11: '\xbfPTARIF', 'M?\xaaDETAT'.  Masked to 7 bits they are still wrong bytes.
    raw = good_historic()
    for before, after in ((b"\nOPTARIF", b"\n\xbfPTARIF"), (b"\nMOTDETAT", b"\nM?\xaaDETAT")):
        damaged = raw.replace(before, after)
        assert damaged != raw
        assert rejected_reason(damaged, HISTORIC) == CHECKSUM
        assert reasons(TicDecoder(HISTORIC).feed(damaged + raw)) == [
            ("rejected", CHECKSUM),
            parse_frame(inner(raw), HISTORIC),
        ]


def test_control_characters_inside_a_group():
    # hekmon/linkytic#51: 'PRM\t...\tN\x0c'.  A stray byte: checksum, even if the sum happened to match.
    raw = good_standard().replace(b"\nPRM\t01234567890123\t4\r", b"\nPRM\t01234567890123\t4\x0c\r")
    assert rejected_reason(raw, STANDARD) == CHECKSUM
    # 'L' (0x4C) -> '\x0c' leaves the 6-bit sum unchanged: still refused.
    sneaky = group("MSG1", "HELLO", STANDARD).replace(b"L", b"\x0c", 1)
    raw = (
        b"\x02" + sneaky + group("SINSTS", "00100", STANDARD) + group("EAST", "000000001", STANDARD) + b"\x03"
    )
    assert rejected_reason(raw, STANDARD) == CHECKSUM


def test_lost_lf_or_cr_merges_groups():
    raw = good_standard()
    cases = {
        "LF replaced": raw.replace(b"\r\nEASF04", b"\r\x0eEASF04"),  # hekmon/linkytic#67
        "LF lost": raw.replace(b"\r\nEASF04", b"\rEASF04"),
        "CR lost": raw.replace(b"\r\nEASF04", b"\nEASF04"),
        "last CR lost": raw[:-2] + b"\x03",
    }
    for name, damaged in cases.items():
        assert damaged != raw, name
        assert rejected_reason(damaged, STANDARD) == TRUNCATED, name


def test_wrong_number_of_separators_is_truncated():
    assert rejected_reason(b"\x02\nPAPP00190 +\r\x03", HISTORIC) == TRUNCATED
    assert rejected_reason(b"\x02\nSINSTS00000\tF\r\x03", STANDARD) == TRUNCATED
    assert rejected_reason(b"\x02\nA\tB\tC\tD\t\x20\r\x03", STANDARD) == TRUNCATED


def test_mode_mismatch_never_yields_a_reading():
    out = TicDecoder(HISTORIC).feed(good_standard() * 2) + TicDecoder(STANDARD).feed(good_historic() * 2)
    assert reasons(out) == [("rejected", CHECKSUM)] * 2 + [("rejected", TRUNCATED)] * 2


def test_missing_fields():
    assert rejected_reason(frame([("ADCO", "1"), ("BASE", "000000001")], HISTORIC), HISTORIC) == MISSING_FIELD
    assert rejected_reason(frame([("ADCO", "1"), ("PAPP", "00100")], HISTORIC), HISTORIC) == MISSING_FIELD
    assert rejected_reason(frame([("EAST", "000000001")], STANDARD), STANDARD) == MISSING_FIELD
    assert rejected_reason(frame([("SINSTS", "00100")], STANDARD), STANDARD) == MISSING_FIELD
    assert rejected_reason(b"\x02\x03", STANDARD) == MISSING_FIELD


@pytest.mark.parametrize(
    ("mode", "groups"),
    [
        (HISTORIC, [("PAPP", "0A190"), ("BASE", "000000001")]),
        (HISTORIC, [("PAPP", "00190"), ("BASE", "00000000x")]),
        (HISTORIC, [("PAPP", "00190"), ("BASE", "000000001"), ("ISOUSC", "3X")]),
        (HISTORIC, [("PAPP", "1e3"), ("BASE", "000000001")]),
        (STANDARD, [("SINSTS", "inf"), ("EAST", "000000001")]),
        (STANDARD, [("SINSTS", "00100"), ("EAST", "-00000001")]),
        (STANDARD, [("SINSTS", "00100"), ("EAST", "000000001"), ("PREF", "X9"), ("PCOUP", "06")]),
        (STANDARD, [("SINSTS", "00100"), ("EAST", "000000001"), ("PCOUP", "")]),
        (STANDARD, [("SINSTS", "00100"), ("EAST", "000000001"), ("DATE", "E260630120000")]),  # no horodate
    ],
)
def test_non_numeric_values_are_bad_values(mode, groups):
    assert rejected_reason(frame(groups, mode), mode) == BAD_VALUE


def test_parse_frame_refuses_framing_bytes_inside():
    raw = inner(good_historic())
    assert rejected_reason(b"\x02" + raw[:40] + b"\x04" + raw[40:] + b"\x03", HISTORIC) == TRUNCATED


# ---- the stream decoder ----------------------------------------------------------------


def test_eot_mid_frame_then_the_next_frame_decodes():
    # hekmon/linkytic#9: 'HCHP 019571184 7\r\x04\x02\n...'
    good = historic_frame(adco="021528603314", papp_va=450, index_wh={"HCHC": 18_000_000, "HCHP": 19_571_184})
    cut = good[: good.index(b"\nHCHP")] + b"\nHCHP 019571184 7\r\x04"
    out = TicDecoder(HISTORIC).feed(good + cut + good)
    expected = Reading(apparent_va=450.0, energy_wh=37_571_184.0, max_power_w=6000.0, meter_id="021528603314")
    assert reasons(out) == [expected, ("rejected", TRUNCATED), expected]
    assert "EOT" in str(out[1])


def test_new_stx_before_etx():
    good = good_standard()
    out = TicDecoder(STANDARD).feed(good[:300] + good)
    assert reasons(out) == [("rejected", TRUNCATED), parse_frame(inner(good), STANDARD)]


def test_leading_partial_frame_is_dropped_silently():
    good = good_historic()
    for start in (1, 5, len(good) // 2, len(good) - 1):  # anywhere inside a frame, ETX included
        assert TicDecoder(HISTORIC).feed(good[start:] + good) == [parse_frame(inner(good), HISTORIC)]
    # Even an EOT or a stray ETX before the first STX is part of that unread tail.
    assert TicDecoder(HISTORIC).feed(b"\x03\x04junk\x03" + good) == [parse_frame(inner(good), HISTORIC)]


def test_an_etx_with_no_frame_open_is_a_lost_frame():
    good = good_historic()
    lost_stx = b"\x7f" + good[1:]  # the STX garbled
    out = TicDecoder(HISTORIC).feed(good + lost_stx + good)
    assert reasons(out) == [parse_frame(inner(good), HISTORIC), ("rejected", TRUNCATED), out[0]]


def _damaged_stream() -> tuple[bytes, list[object]]:
    """Every kind of fault the decoder handles, with the outcomes a whole-stream feed gives."""
    a, b = good_standard(1000), good_standard(2000)
    ra, rb = parse_frame(inner(a), STANDARD), parse_frame(inner(b), STANDARD)
    bad_sum = b.replace(b"\nSINSTS\t02000\t", b"\nSINSTS\t02001\t")
    lost_lf = a.replace(b"\r\nEASF04", b"\r\x0eEASF04")
    parts: list[tuple[bytes, list[object]]] = [
        (a[700:], []),  # the tail the port opened on
        (a, [ra]),
        (bad_sum, [("rejected", CHECKSUM)]),
        (b[:400] + b"\x04", [("rejected", TRUNCATED)]),
        (b, [rb]),
        (lost_lf, [("rejected", TRUNCATED)]),
        (a[:123], [("rejected", TRUNCATED)]),  # cut by the next STX
        (b"\x02" + b"Z" * (MAX_FRAME + 500) + b"\x03", [("rejected", TRUNCATED)]),  # no ETX in time
        (a, [ra]),
        (b, [rb]),
    ]
    return b"".join(p for p, _ in parts), [o for _, outs in parts for o in outs]


def test_whole_stream_outcomes():
    stream, expected = _damaged_stream()
    assert reasons(TicDecoder(STANDARD).feed(stream)) == expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 509, 4097])
def test_chunk_boundaries_do_not_matter(chunk):
    stream, expected = _damaged_stream()
    decoder = TicDecoder(STANDARD)
    out: list[Reading | Rejected] = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    assert reasons(out) == expected


def test_random_split_points_do_not_matter():
    stream, expected = _damaged_stream()
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(stream)), 200))
    decoder = TicDecoder(STANDARD)
    out: list[Reading | Rejected] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[lo:hi])
    assert reasons(out) == expected


def test_endless_frame_keeps_the_buffer_bounded():
    decoder = TicDecoder(HISTORIC)
    out = decoder.feed(b"\x02")
    for _ in range(1000):
        out += decoder.feed(b"A" * 1000)
        assert decoder.buffered <= MAX_FRAME
    assert reasons(out) == [("rejected", TRUNCATED)]
    assert decoder.buffered == 0
    assert decoder.feed(good_historic()) == [parse_frame(inner(good_historic()), HISTORIC)]


def test_random_garbage_keeps_the_buffer_bounded_and_yields_no_reading():
    rng = random.Random(20260630)
    decoder = TicDecoder(STANDARD)
    out: list[Reading | Rejected] = []
    for _ in range(300):
        out += decoder.feed(rng.randbytes(997))
        assert decoder.buffered <= MAX_FRAME
    assert out and all(isinstance(r, Rejected) for r in out)
    assert {r.reason for r in out if isinstance(r, Rejected)} <= {CHECKSUM, TRUNCATED, MISSING_FIELD}
    assert decoder.feed(b"\x03" + good_standard())[-1] == parse_frame(inner(good_standard()), STANDARD)

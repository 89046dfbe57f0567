"""The Linky's TIC customer output (historic and standard modes): frames to `Reading`s, and back.

The meter talks without pause and without being asked: a frame every 1-2 s, on a
7E1 line that a cheap optocoupler dongle often garbles.  Nothing on the line can
be asked again, so the decoder's job is to never let a damaged frame through
and to lose as little as possible around one: a frame is one consistent snapshot
and the next comes within seconds, so any doubt rejects the whole frame.

Builders (`group`, `frame`, `historic_frame`, `standard_frame`) produce the exact
bytes a meter sends, so a simulated meter and the tests exercise the same
decoder as a real one.

Sources: Enedis-NOI-CPT_54E (standard) and Enedis-NOI-CPT_02E (historic), and
captures from real meters; the checksum rules below fit every captured group.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable, Mapping

from devices.reading import BAD_VALUE, CHECKSUM, MISSING_FIELD, TRUNCATED, Reading, Rejected, number

HISTORIC = "historic"
STANDARD = "standard"
BAUDRATE = {HISTORIC: 1200, STANDARD: 9600}  # both 7 data bits, even parity, 1 stop bit

STX, ETX, EOT, LF, CR, SP, HT = 0x02, 0x03, 0x04, 0x0A, 0x0D, 0x20, 0x09
SEPARATOR = {HISTORIC: SP, STANDARD: HT}

# The longest frame content (STX..ETX exclusive) accepted: a three-phase standard
# frame is under 2 kB, so anything past this is a lost ETX, and holding more
# would only let line noise grow the buffer.
MAX_FRAME = 4096

HISTORIC_INDEXES = (
    "BASE",
    "HCHC",
    "HCHP",
    "EJPHN",
    "EJPHPM",
    "BBRHCJB",
    "BBRHPJB",
    "BBRHCJW",
    "BBRHPJW",
    "BBRHCJR",
    "BBRHPJR",
)
SHORT_FRAME_LABELS = ("ADIR1", "ADIR2", "ADIR3")  # a three-phase meter's overload frame
VA_PER_AMP = 200  # ISOUSC 30 A is a 6 kVA subscription: French subscriptions count 200 VA per amp

# A 7-bit line read as 8 bits shows the parity bit as bit 7; LibTeleinfo masks it off.
_MASK = bytes(b & 0x7F for b in range(256))
_FRAMING = re.compile(b"[\x02\x03\x04]")
_SEASON_UTC_OFFSET = {"E": 2, "H": 1}  # the letters name French time, whatever the zone


def _check_mode(mode: str) -> None:
    if mode not in SEPARATOR:
        raise ValueError(f"unknown TIC mode {mode!r}: expected {HISTORIC!r} or {STANDARD!r}")


def checksum(body: bytes) -> bytes:
    """The checksum character of the bytes it covers (which bytes differs by mode: see `group`).

    Six bits of the sum, lifted into the printable range: it can be a space, which
    is why nothing here ever strips or splits on whitespace.
    """
    return bytes([(sum(body) & 0x3F) + 0x20])


def group(label: str, data: str, mode: str, horodate: str | None = None) -> bytes:
    """One LF..CR group as the meter sends it.

    Historic: the sum covers `label SP data`, not the SP before the checksum.
    Standard: it covers everything up to and including the HT before the checksum
    (so a horodate and its HT too).  Those are the rules every captured group fits.
    """
    _check_mode(mode)
    sep = chr(SEPARATOR[mode])
    if horodate is not None and mode != STANDARD:
        raise ValueError("only standard-mode groups carry a horodate")
    fields = [label, data] if horodate is None else [label, horodate, data]
    for text in fields:
        if any(ord(c) < 0x20 or ord(c) >= 0x7F for c in text) or sep in text:
            raise ValueError(f"a TIC field cannot hold a control character or a separator: {text!r}")
    if mode == HISTORIC:
        body = f"{label} {data}".encode("ascii")
        return b"\n" + body + b" " + checksum(body) + b"\r"
    body = ("\t".join(fields) + "\t").encode("ascii")
    return b"\n" + body + checksum(body) + b"\r"


def frame(groups: Iterable[tuple[str, str] | tuple[str, str, str]], mode: str) -> bytes:
    """STX, the groups in order, ETX.  A 3-tuple is (label, horodate, data), as on the wire."""
    out = [b"\x02"]
    for g in groups:
        if len(g) == 3:
            out.append(group(g[0], g[2], mode, horodate=g[1]))
        else:
            out.append(group(g[0], g[1], mode))
    out.append(b"\x03")
    return b"".join(out)


def horodate(t: float, tz: str = "Europe/Paris") -> str:
    """'SAAMMJJhhmmss' for Unix time `t`: the zone's wall clock, E in summer time, H in winter.

    The season letter is what makes the wall clock unambiguous on the night the
    clocks go back; the decoder reads E/H as UTC+2/UTC+1, the French offsets.
    """
    local = dt.datetime.fromtimestamp(int(t // 1), zoneinfo.ZoneInfo(tz))
    season = "E" if local.dst() else "H"
    return season + local.strftime("%y%m%d%H%M%S")


def _digits(value: int, width: int, what: str) -> str:
    if not 0 <= value < 10**width:
        raise ValueError(f"{what}={value} does not fit the meter's {width} digits")
    return f"{value:0{width}d}"


_OPTARIF = {"BASE": "BASE", "HC": "HC..", "EJ": "EJP.", "BB": "BBR("}


def historic_frame(
    *, adco: str, papp_va: int, index_wh: int | Mapping[str, int], isousc_a: int = 30, ptec: str = "TH.."
) -> bytes:
    """A single-phase historic frame as a Linky sends it: an int index is the BASE tariff.

    A mapping names the indexes of another tariff (HCHC/HCHP, EJP*, BBR*); the
    OPTARIF sent follows from their names.  Values that would not fit the
    meter's fixed widths raise, rather than produce a frame no meter sends.
    """
    indexes = {"BASE": index_wh} if isinstance(index_wh, int) else dict(index_wh)
    unknown = sorted(set(indexes) - set(HISTORIC_INDEXES))
    if not indexes or unknown:
        raise ValueError(f"index labels must be among {HISTORIC_INDEXES}, got {sorted(indexes)}")
    first = next(iter(indexes))
    optarif = _OPTARIF["BASE" if first == "BASE" else first[:2]]
    groups: list[tuple[str, str]] = [
        ("ADCO", adco),
        ("OPTARIF", optarif),
        ("ISOUSC", _digits(isousc_a, 2, "isousc_a")),
    ]
    groups += [(label, _digits(wh, 9, label)) for label, wh in indexes.items()]
    groups += [
        ("PTEC", ptec),
        ("IINST", _digits(round(papp_va / 230), 3, "IINST")),
        ("IMAX", "090"),
        ("PAPP", _digits(papp_va, 5, "papp_va")),
        ("HHPHC", "A"),
        ("MOTDETAT", "000000"),
    ]
    return frame(groups, HISTORIC)


def standard_frame(
    *,
    adsc: str,
    sinsts_va: int,
    east_wh: int,
    t: float,
    pref_kva: int = 9,
    pcoup_kva: int | None = None,
    tz: str = "Europe/Paris",
) -> bytes:
    """A single-phase standard frame as a Linky sends it, dated `t`, on an HP/HC tariff.

    It carries the awkward parts of real frames on purpose: text with inner
    spaces and padding (NGTF, LTARF, MSG1, PJOURF+1), timestamped groups
    (SMAXSN, CCASN, UMOY1) and the empty-data DATE group.  PCOUP defaults to PREF.
    """
    h = horodate(t, tz)
    offpeak = east_wh * 4 // 10
    groups: list[tuple[str, str] | tuple[str, str, str]] = [
        ("ADSC", adsc),
        ("VTIC", "02"),
        ("DATE", h, ""),
        ("NGTF", "H PLEINE/CREUSE "),
        ("LTARF", " HEURE  PLEINE  "),
        ("EAST", _digits(east_wh, 9, "east_wh")),
        ("EASF01", _digits(offpeak, 9, "EASF01")),
        ("EASF02", _digits(east_wh - offpeak, 9, "EASF02")),
    ]
    groups += [(f"EASF{i:02d}", "000000000") for i in range(3, 11)]
    groups += [
        ("EASD01", _digits(east_wh, 9, "EASD01")),
        ("EASD02", "000000000"),
        ("EASD03", "000000000"),
        ("EASD04", "000000000"),
        ("IRMS1", _digits(round(sinsts_va / 230), 3, "IRMS1")),
        ("URMS1", "230"),
        ("PREF", _digits(pref_kva, 2, "pref_kva")),
        ("PCOUP", _digits(pref_kva if pcoup_kva is None else pcoup_kva, 2, "pcoup_kva")),
        ("SINSTS", _digits(sinsts_va, 5, "sinsts_va")),
        ("SMAXSN", h, _digits(sinsts_va, 5, "SMAXSN")),
        ("SMAXSN-1", h, _digits(sinsts_va, 5, "SMAXSN-1")),
        ("CCASN", h, "00000"),
        ("UMOY1", h, "230"),
        ("STGE", "003A0001"),
        ("MSG1", "PAS DE          MESSAGE         "),
        ("PRM", "01234567890123"),
        ("RELAIS", "000"),
        ("NTARF", "02"),
        ("NJOURF", "00"),
        ("NJOURF+1", "00"),
        ("PJOURF+1", "00008002 0210C001 08108002 NONUTILE NONUTILE NONUTILE NONUTILE NONUTILE"),
    ]
    return frame(groups, STANDARD)


def _split_group(content: bytes, mode: str) -> tuple[str, str | None, str]:
    """(label, horodate, data) of one group's bytes between LF and CR.

    Two kinds of damage, two reasons.  A group that cannot be cut into its fields
    (a separator missing or extra, the byte before the checksum not a separator)
    has lost or gained bytes: TRUNCATED.  A group whose fields are all there but
    whose bytes are wrong (a control character, a flipped bit, a digit turned
    into a space) is what the checksum exists to catch: CHECKSUM, even for a
    control character whose sum happens to match, since a 6-bit sum lets one in
    64 corruptions through.
    """
    sep = SEPARATOR[mode]
    bad = next((b for b in content if (b < 0x20 and b != sep) or b == 0x7F), None)
    if bad is not None:
        raise Rejected(CHECKSUM, f"control character 0x{bad:02x} in group {content!r}")
    if len(content) < 3 or content[-2] != sep:
        raise Rejected(TRUNCATED, f"no separator before the checksum in group {content!r}")
    chk = content[-1:]
    if mode == HISTORIC:
        body = content[:-2]
        label, space, data = body.decode("ascii").partition(" ")
        if not space or not label:
            raise Rejected(TRUNCATED, f"group {content!r} is not 'label SP data SP checksum'")
        fields = [label, data]
    else:
        body = content[:-1]
        fields = content[:-2].decode("ascii").split("\t")
        if len(fields) not in (2, 3) or not fields[0]:
            raise Rejected(TRUNCATED, f"group {content!r} has {len(fields) - 1} separators, not 1 or 2")
    if checksum(body) != chk:
        raise Rejected(CHECKSUM, f"group {content!r}: checksum {chk!r}, computed {checksum(body)!r}")
    if len(fields) == 3:
        return fields[0], fields[1], fields[2]
    return fields[0], None, fields[1]


def _groups(raw: bytes, mode: str) -> dict[str, tuple[str | None, str]]:
    """label -> (horodate, data) for every group of a frame; any damaged group rejects it all."""
    out: dict[str, tuple[str | None, str]] = {}
    pos = 0
    while pos < len(raw):
        if raw[pos] != LF:
            raise Rejected(TRUNCATED, f"byte {raw[pos : pos + 1]!r} where a group's LF belongs (a lost LF?)")
        end = raw.find(b"\r", pos + 1)
        if end < 0:
            raise Rejected(TRUNCATED, f"group without CR: {raw[pos : pos + 40]!r}")
        content = raw[pos + 1 : end]
        if LF in content:
            raise Rejected(TRUNCATED, f"LF inside a group (a lost CR merged two groups): {content!r}")
        label, stamp, data = _split_group(content, mode)
        out[label] = (stamp, data)
        pos = end + 1
    return out


def _numeric(fields: Mapping[str, tuple[str | None, str]], label: str) -> float | None:
    """A numeric field's value, None when absent.  Only ASCII digits, padding spaces aside.

    `float()` alone would take '1e3', 'inf' or '1_000', none of which a meter sends.
    """
    if label not in fields:
        return None
    text = fields[label][1].strip(" ")
    if not (text.isascii() and text.isdigit()):
        raise Rejected(BAD_VALUE, f"{label} is not a number: {fields[label][1]!r}")
    return number(text, label)


def parse_horodate(h: str) -> float | None:
    """Unix seconds of a 'SAAMMJJhhmmss' horodate; None when the meter does not know the season.

    Lowercase e/h occur (possibly a clock not yet synchronised) and are read like
    E/H; a space season gives no usable offset, so no time rather than a guess.
    """
    if len(h) != 13:
        raise Rejected(BAD_VALUE, f"horodate {h!r} is not 13 characters")
    season, digits = h[0], h[1:]
    if season == " ":
        return None
    offset = _SEASON_UTC_OFFSET.get(season.upper())
    if offset is None or not (digits.isascii() and digits.isdigit()):
        raise Rejected(BAD_VALUE, f"horodate {h!r} is not SAAMMJJhhmmss")
    yy, mo, dd, hh, mi, ss = (int(digits[i : i + 2]) for i in range(0, 12, 2))
    try:
        local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=dt.timezone(dt.timedelta(hours=offset)))
    except ValueError:
        raise Rejected(BAD_VALUE, f"horodate {h!r} is not a date") from None
    return local.timestamp()


def _historic(fields: Mapping[str, tuple[str | None, str]]) -> Reading:
    meter_id = fields.get("ADCO", (None, ""))[1] or None
    if "PAPP" not in fields and any(label in fields for label in SHORT_FRAME_LABELS):
        return Reading(meter_id=meter_id)
    papp = _numeric(fields, "PAPP")
    if papp is None:
        raise Rejected(MISSING_FIELD, "no PAPP in the frame")
    indexes = [v for label in HISTORIC_INDEXES if (v := _numeric(fields, label)) is not None]
    if not indexes:
        raise Rejected(MISSING_FIELD, f"no energy index ({', '.join(HISTORIC_INDEXES)}) in the frame")
    isousc = _numeric(fields, "ISOUSC")
    return Reading(
        apparent_va=papp,
        energy_wh=sum(indexes),
        max_power_w=isousc * VA_PER_AMP if isousc else None,
        meter_id=meter_id,
    )


def _standard(fields: Mapping[str, tuple[str | None, str]]) -> Reading:
    sinsts = _numeric(fields, "SINSTS")
    if sinsts is None:
        raise Rejected(MISSING_FIELD, "no SINSTS in the frame")
    east = _numeric(fields, "EAST")
    if east is None:
        raise Rejected(MISSING_FIELD, "no EAST in the frame")
    pcoup, pref = _numeric(fields, "PCOUP"), _numeric(fields, "PREF")
    kva = pcoup or pref
    stamp = fields["DATE"][0] if "DATE" in fields else ""
    if stamp is None:
        raise Rejected(BAD_VALUE, "DATE without a horodate")
    return Reading(
        apparent_va=sinsts,
        energy_wh=east,
        max_power_w=kva * 1000 if kva else None,
        time=parse_horodate(stamp) if stamp else None,
        meter_id=fields.get("ADSC", (None, ""))[1] or None,
    )


def parse_frame(raw: bytes, mode: str) -> Reading:
    """The reading of one frame, given the bytes between its STX and ETX.

    Historic: PAPP (VA), the sum of every energy index present (Wh: the tariff's
    indexes together count all the energy drawn), ISOUSC x 200 as the maximum
    power, ADCO; no time.  Standard: SINSTS, EAST, PCOUP (else PREF) x 1000, the
    DATE horodate, ADSC.  A subscription of 0 is treated as not declared.

    A three-phase meter's overload short frame (ADIRn, no PAPP) is not a fault:
    it returns a Reading with only `meter_id` set (apparent_va None marks it),
    which `TicDecoder` does not pass on.  Labels not listed above are checked
    (checksum) but otherwise ignored.
    """
    _check_mode(mode)
    raw = raw.translate(_MASK)
    if _FRAMING.search(raw):
        raise Rejected(TRUNCATED, "STX, ETX or EOT inside a frame")
    fields = _groups(raw, mode)
    return _historic(fields) if mode == HISTORIC else _standard(fields)


class TicDecoder:
    """Bytes from the serial port, in whatever chunks they arrive, to readings and rejections.

    The bytes before the first STX are the tail of a frame the port opened in
    the middle of: dropped without a word, as that is no fault.  After that,
    every frame lost is reported once, as TRUNCATED: one interrupted by EOT or by
    a new STX, one with no ETX within MAX_FRAME bytes (the decoder then waits for
    the next STX, so line noise never grows the buffer), and an ETX with no
    frame open (its STX was garbled).  Other bytes between frames are ignored.
    """

    _UNSYNCED, _IDLE, _FRAME, _DISCARD = range(4)

    def __init__(self, mode: str):
        _check_mode(mode)
        self.mode = mode
        self._buf = bytearray()
        self._state = self._UNSYNCED

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (never more than MAX_FRAME)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Reading | Rejected]:
        out: list[Reading | Rejected] = []
        data = data.translate(_MASK)
        i, n = 0, len(data)
        while i < n:
            m = _FRAMING.search(data, i)
            j = m.start() if m else n
            if self._state == self._FRAME:
                room = MAX_FRAME - len(self._buf)
                if j - i > room:
                    out.append(Rejected(TRUNCATED, f"no ETX within {MAX_FRAME} bytes"))
                    self._buf.clear()
                    self._state = self._DISCARD
                    i += room
                    continue
                self._buf += data[i:j]
            if m is None:
                break
            i = j + 1
            self._control(data[j], out)
        return out

    def _control(self, byte: int, out: list[Reading | Rejected]) -> None:
        if self._state == self._FRAME:
            if byte == ETX:
                self._finish(out)
                self._state = self._IDLE
            else:
                why = "interrupted by EOT" if byte == EOT else "a new STX before ETX"
                out.append(Rejected(TRUNCATED, f"frame {why} after {len(self._buf)} bytes"))
                self._state = self._FRAME if byte == STX else self._DISCARD
            self._buf.clear()
        elif byte == STX:
            self._state = self._FRAME
        elif byte == ETX and self._state == self._IDLE:
            out.append(Rejected(TRUNCATED, "ETX with no frame open (a lost STX)"))
        elif byte == ETX and self._state == self._DISCARD:
            self._state = self._IDLE  # the end of the frame already reported

    def _finish(self, out: list[Reading | Rejected]) -> None:
        try:
            reading = parse_frame(bytes(self._buf), self.mode)
        except Rejected as exc:
            out.append(exc)
            return
        if reading.apparent_va is not None:
            out.append(reading)

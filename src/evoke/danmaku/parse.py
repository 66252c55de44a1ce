"""Danmaku (time-synced viewer comments): parse Bilibili XML, Niconico JSON and CSV; clean.

Formats (:func:`parse_danmaku`, chosen by suffix or by the first character):

* **Bilibili XML**: ``<i>`` root with ``<d p="...">text</d>``; ``p`` has 8
  fields ``time_s, mode, size, color, unix_ts, pool, user_hash, dmid`` or 9
  (a trailing ``weight``). Parsed with expat, streaming; a document type
  declaration (the only way to declare entities) is refused, so no entity is
  ever expanded (billion laughs, external entities); the five predefined XML
  entities and character references work as usual.
* **Niconico XML** (the legacy export): ``<packet>`` root with ``<chat vpos=...
  date=... mail=... user_id=... no=...>text</chat>`` (``vpos`` in centiseconds),
  read by the same parser (``fmt`` ``bilibili`` means XML). An XML document whose
  root is neither ``<i>`` nor ``<packet>`` and that holds no comments is refused.
* **Niconico JSON**: a list of ``{id, vpos, content, date, mail}`` (``vpos`` in
  centiseconds, ``mail`` the commands, a list or a space-separated string), the
  legacy ``[{"chat": {...}}, ...]`` form, or the nvComment API's
  ``{"data": {"threads": [{"comments": [{vposMs, body, commands, postedAt,
  userId}]}]}}``. Lists are decoded one entry at a time; the API object is
  parsed whole and refused over :data:`MAX_JSON_OBJECT_BYTES`; a document nested
  too deeply for Python's parser is refused as malformed.
* **CSV/TSV**: ``time_s`` (or ``time``) and ``text``; optional ``mode``,
  ``user_hash``, ``post_time`` (unix seconds), ``comment_id``.

Text encoding (:func:`detect_encoding`): a BOM, the XML declaration's encoding,
UTF-8 when the whole file is valid UTF-8, else GB18030 or Shift-JIS, whichever
is valid and reads as common characters of its own character set (a Shift-JIS
file is never taken for GB18030 mojibake just because its bytes happen to be
valid GB18030); a file that reads plausibly in neither is refused. ``encoding``
forces one.

Memory: the file is read, decoded and parsed 1 MiB at a time and comments are
held as Arrow columns (never one Python object per comment for the whole
file); at the 256 MiB size limit peak memory stays under about 2 GiB (measured
in ``bench/RESULTS.md``, "Reliability: inputs").

Comment table (:data:`COMMENT_SCHEMA`), in file order:

============  =======  ===============================================================
column        type     meaning
============  =======  ===============================================================
video_id      str
time_s        float64  video time of the comment, seconds
mode          str      scroll, top, bottom, reverse, positioned, code, other
mode_code     int32    the format's own code (Bilibili 1-9; Niconico: 1 naka, 5 ue,
                       4 shita as in Bilibili)
text          str      the comment (after cleaning: runs of one character longer than
                       ``max_run`` shortened to ``max_run``, whitespace collapsed)
user_hash     str      the poster's (hashed) id, null when the format has none
post_time     int64    when it was posted, unix seconds (null when unknown)
comment_id    str      the comment's id in its file (dmid / id), or its position
n_repeats     int32    copies of this comment by the same user collapsed into it (1 = none)
============  =======  ===============================================================

Cleaning (:func:`clean_comments`), each drop counted by reason:
``empty_text``; ``impossible_time`` (not a finite number, or negative: there is
no fixed cap, replays of live streams run past 100 hours);
``after_video_end`` (at or past the video's duration, when known);
``mode_dropped_{mode}`` (modes not in ``keep_modes``, default scroll, top,
bottom, reverse); ``spam_repeat`` (the same text by the same user again: the
first is kept and counts the copies in ``n_repeats``). Parsing drops:
``malformed_p`` (a ``p`` attribute without 8+ fields or with a non-numeric time
or mode), ``malformed_comment`` (a JSON entry or ``<chat>`` without time or
text), ``malformed_mode`` (a mode code outside Int32, Niconico commands that are
neither text nor a list), ``malformed_post_time`` (a post time that is not a
finite number of seconds within Int64, or a date that cannot be read). A file
that cannot be used at all raises :class:`DanmakuError`; in the workflow it is
one failures row and the other videos go on.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from xml.parsers import expat

import polars as pl

from evoke.labels.common import BuilderConfig, Dropped, LabelError, after_video_end, video_durations

log = logging.getLogger(__name__)


class DanmakuError(LabelError):
    """A danmaku file or model cannot be used: the message names the file and why."""


COMMENT_SCHEMA = {
    "video_id": pl.String,
    "time_s": pl.Float64,
    "mode": pl.String,
    "mode_code": pl.Int32,
    "text": pl.String,
    "user_hash": pl.String,
    "post_time": pl.Int64,
    "comment_id": pl.String,
    "n_repeats": pl.Int32,
}
BILIBILI_MODES = {1: "scroll", 2: "scroll", 3: "scroll", 4: "bottom", 5: "top", 6: "reverse",
                  7: "positioned", 8: "code", 9: "code"}
NICONICO_POSITIONS = {"ue": ("top", 5), "shita": ("bottom", 4), "naka": ("scroll", 1)}
MODES = ("scroll", "top", "bottom", "reverse", "positioned", "code", "other")


@dataclass(frozen=True)
class DanmakuParseConfig(BuilderConfig):
    keep_modes: tuple[str, ...] = ("scroll", "top", "bottom", "reverse")
    collapse_spam: bool = True
    max_run: int = 4  # "哈哈哈哈哈哈哈哈" -> "哈哈哈哈"
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self):
        unknown = set(self.keep_modes) - set(MODES)
        if unknown:
            raise DanmakuError(f"danmaku: unknown mode(s) {', '.join(sorted(unknown))}; known: {', '.join(MODES)}")
        if self.max_run < 1:
            raise DanmakuError("danmaku: max_run must be at least 1")


# --------------------------------------------------------------------------- reading

_CHUNK_BYTES = 1 << 20  # files are read, decoded and parsed this many bytes at a time
_ROWS_PER_PART = 65_536  # parsed comments become an Arrow table part this many rows at a time
# the nvComment API layout (a JSON object) is parsed whole: its Python objects take
# ~15x the file, so it has its own, smaller limit (an API response holds a few thousand)
MAX_JSON_OBJECT_BYTES = 16 * 1024 * 1024
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
# the legacy encodings a danmaku file without a declaration may be in; each is judged by
# how much of the text falls in its level-1 (common) characters, see _legacy_score
LEGACY_ENCODINGS = ("gb18030", "shift_jis")
_LEVEL1_LEADS = {"gb18030": ("gb2312", set(range(0xA1, 0xAA)) | set(range(0xB0, 0xD8))),
                 "shift_jis": ("shift_jis", set(range(0x81, 0x85)) | set(range(0x88, 0x99)))}


def _chunks(path: Path, size: int = _CHUNK_BYTES) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while chunk := f.read(size):
                yield chunk
    except OSError as exc:
        raise DanmakuError(f"{path}: cannot read the file: {exc.strerror or exc}") from None


def _valid_in(path: Path, encoding: str) -> str | None:
    """None when the whole file decodes strictly in ``encoding``, else why not (streamed)."""
    dec = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    try:
        for chunk in _chunks(path):
            dec.decode(chunk)
            offset += len(chunk)
        dec.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return f"{encoding} ({exc.reason} at byte {offset + exc.start})"
    return None


def _legacy_score(sample: bytes, encoding: str) -> float:
    """Share of the sample's non-ASCII characters that are level-1 characters of the
    encoding's character set (GB 2312 level 1 and symbols; JIS X 0208 kana, symbols and
    level-1 kanji). Text in the other encoding decodes to rare characters (Shift-JIS
    read as GB18030 lands in GBK's extension areas; GB read as Shift-JIS in half-width
    katakana), so the right reading scores near 1 and the wrong one near 0."""
    charset, leads = _LEVEL1_LEADS[encoding]
    chars = [c for c in sample.decode(encoding, errors="ignore") if ord(c) > 0x7F]
    if not chars:
        return 0.0
    good = 0
    for c in chars:
        try:
            good += c.encode(charset)[0] in leads
        except UnicodeEncodeError:
            pass
    return good / len(chars)


def detect_encoding(path: Path, head: bytes, encoding: str | None = None,
                    prefer: tuple[str, ...] = LEGACY_ENCODINGS) -> str:
    """The text encoding of a danmaku file, read in chunks (never the whole file at once).

    Order: ``encoding`` when given; a byte-order mark; the XML declaration's
    encoding; UTF-8 when the whole file is valid UTF-8; else the legacy encoding
    (GB18030, Shift-JIS) whose reading is plausible by :func:`_legacy_score`. A
    file valid in both whose readings are not clearly apart, or in none, raises
    :class:`DanmakuError` asking for ``--encoding``.
    """
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DanmakuError(f"{path}: unknown text encoding '{encoding}'") from None
        return encoding
    for bom, enc in _BOMS:
        if head.startswith(bom):
            return enc
    m = _XML_DECL.match(head[:200])
    if m:
        declared = m.group(1).decode("ascii").lower()
        declared = "gb18030" if declared in ("gbk", "gb2312", "gb-2312") else declared
        try:
            codecs.lookup(declared)
        except LookupError:
            raise DanmakuError(f"{path}: unknown text encoding '{declared}' in the XML declaration") from None
        return declared
    why = _valid_in(path, "utf-8")
    if why is None:
        return "utf-8"
    tried = [why]
    valid = []
    for enc in prefer:
        why = _valid_in(path, enc)
        if why is None:
            valid.append(enc)
        else:
            tried.append(why)
    if not valid:
        raise DanmakuError(f"{path}: cannot decode the text: tried {', '.join(tried)}; pass --encoding")
    sample = _non_ascii_sample(path)
    scores = sorted(((_legacy_score(sample, e), e) for e in valid), reverse=True)
    best, enc = scores[0]
    runner_up = scores[1][0] if len(scores) > 1 else 0.0
    if best < 0.5 or best - runner_up < 0.3:
        shown = ", ".join(f"{e} {s:.2f}" for s, e in scores)
        raise DanmakuError(f"{path}: not UTF-8 and no legacy encoding reads plausibly (share of common "
                           f"characters: {shown}); pass --encoding")
    return enc


def _non_ascii_sample(path: Path, size: int = 64 * 1024) -> bytes:
    """``size`` bytes from the first non-ASCII byte on (a lead byte in GB and Shift-JIS alike)."""
    with open(path, "rb") as f:
        offset = 0
        while chunk := f.read(_CHUNK_BYTES):
            m = re.search(rb"[\x80-\xff]", chunk)
            if m:
                f.seek(offset + m.start())
                return f.read(size)
            offset += len(chunk)
    return b""


def _text_chunks(path: Path, encoding: str) -> Iterator[str]:
    dec = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    try:
        for chunk in _chunks(path):
            text = dec.decode(chunk)
            offset += len(chunk)
            if text:
                yield text
        tail = dec.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DanmakuError(f"{path}: not valid {encoding} ({exc.reason} at byte {offset + exc.start}); "
                           "pass --encoding") from None
    if tail:
        yield tail


class _BadField(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _int_field(value, bounds: tuple[int, int], reason: str, what: str) -> int | None:
    """An integer field (a number or its text) within ``bounds``; None when absent."""
    if value is None:
        return None
    kind = type(value)
    try:
        if kind is int:
            number = value
        elif kind is str:
            if not value.strip():
                return None
            try:
                number = int(value)
            except ValueError:
                number = float(value)
        elif kind is float:
            number = value
        else:  # bool, lists, objects
            raise ValueError
        if kind is not int and isinstance(number, float):
            if not math.isfinite(number):
                raise ValueError
            number = int(number)
        if not bounds[0] <= number <= bounds[1]:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _BadField(reason, f"{what}={str(value)[:40]!r}") from None
    return number


class _Comments:
    """Validated comments collected column-wise and turned into Arrow parts every
    ``_ROWS_PER_PART`` rows, so a file's Python objects never outgrow one part.

    A field that cannot be stored drops its comment, counted by reason:
    ``malformed_mode`` (not an integer, or outside Int32), ``malformed_post_time``
    (not a finite number of seconds within Int64, or an unreadable date).
    """

    _SCHEMA = {k: v for k, v in COMMENT_SCHEMA.items() if k not in ("video_id", "n_repeats")}

    def __init__(self, dropped: Dropped):
        self.dropped = dropped
        self.parts: list[pl.DataFrame] = []
        self.cols: dict[str, list] = {k: [] for k in self._SCHEMA}

    def add(self, where, time_s: float, mode: str, mode_code, text: str, user, post, cid) -> None:
        try:
            code = _int_field(mode_code, _INT32, "malformed_mode", "mode")
            post = _int_field(post, _INT64, "malformed_post_time", "post_time")
        except _BadField as exc:
            where = f"line {where}" if isinstance(where, int) else where
            self.dropped.add(exc.reason, 1, [f"{where}: {exc}"])
            return
        c = self.cols
        c["time_s"].append(time_s)
        c["mode"].append(mode)
        c["mode_code"].append(code)
        c["text"].append(text)
        c["user_hash"].append(None if user is None or user == "" else str(user))
        c["post_time"].append(post)
        c["comment_id"].append(None if cid is None or cid == "" else str(cid))
        if len(c["time_s"]) >= _ROWS_PER_PART:
            self._flush()

    def _flush(self) -> None:
        if self.cols["time_s"]:
            self.parts.append(pl.DataFrame(self.cols, schema=self._SCHEMA))
            self.cols = {k: [] for k in self._SCHEMA}

    def frame(self) -> pl.DataFrame:
        self._flush()
        return pl.concat(self.parts) if self.parts else pl.DataFrame(schema=self._SCHEMA)


# --------------------------------------------------------------------------- formats


def _time(value) -> float:
    """A comment time as a float (NaN/inf kept: cleaning drops them as impossible_time)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    try:
        return float(value)  # ValueError / TypeError for text that is not a number
    except OverflowError:  # an integer past float's range: not a finite time
        return math.inf if value > 0 else -math.inf


def parse_xml_comments(chunks: Iterable[str], source: str | Path, out: _Comments) -> None:
    """Comments of a Bilibili XML (``<i><d p=...>``) or legacy Niconico XML
    (``<packet><chat vpos=... date=... mail=... user_id=... no=...>``) document,
    fed to expat one decoded chunk at a time."""
    dropped = out.dropped
    state = {"attrs": None, "tag": None, "buf": [], "root": None, "n": 0}
    parser = expat.ParserCreate("UTF-8")

    def refuse_doctype(*_args):
        raise DanmakuError(f"{source}: XML with a document type declaration (DTD/entities) is refused")

    def start(name, attrs):
        if state["root"] is None:
            state["root"] = name
        if name in ("d", "chat"):
            state["attrs"], state["tag"], state["buf"] = attrs, name, []

    def end(name):
        if name != state["tag"] or state["attrs"] is None:
            return
        attrs, body = state["attrs"], "".join(state["buf"])
        state["attrs"] = state["tag"] = None
        state["n"] += 1
        where = parser.CurrentLineNumber  # a line number: formatted only for a drop's example
        if name == "d":
            p = attrs.get("p", "")
            f = p.split(",")
            try:
                if len(f) < 8:
                    raise ValueError("fewer than 8 fields")
                t = _time(f[0])
                code = int(f[1])
            except ValueError:
                dropped.add("malformed_p", 1, [f"line {where}: p={p[:60]!r}"])
                return
            out.add(where, t, BILIBILI_MODES.get(code, "other"), code, body, f[6], f[4], f[7])
        else:
            try:
                t = _time(attrs["vpos"]) / 100
            except (KeyError, ValueError):
                dropped.add("malformed_comment", 1, [f"line {where}: vpos={attrs.get('vpos')!r}"])
                return
            mode, code = _nico_mode(attrs.get("mail", ""))
            out.add(where, t, mode, code, body, attrs.get("user_id"), attrs.get("date"), attrs.get("no"))

    def chars(data):
        if state["attrs"] is not None:
            state["buf"].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    first = True
    try:
        for text in chunks:
            if first:  # decoded already: drop the declared encoding
                text, first = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1), False
            parser.Parse(text.encode("utf-8"), False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise DanmakuError(f"{source}: malformed XML: {expat.ErrorString(exc.code)} "
                           f"at line {exc.lineno}, column {exc.offset}") from None
    if state["root"] is None:
        raise DanmakuError(f"{source}: no XML root element")
    if state["n"] == 0 and state["root"] not in ("i", "packet"):
        raise DanmakuError(f"{source}: XML root <{state['root'][:40]}> holds no comments: not a Bilibili "
                           "(<i><d p=...>) or Niconico (<packet><chat vpos=...>) danmaku file")


def _nico_mode(commands) -> tuple[str, int]:
    if isinstance(commands, str):
        cmds = commands.split()
    elif isinstance(commands, list):
        cmds = commands
    elif commands is None:
        cmds = []
    else:
        raise _BadField("malformed_mode", f"commands={str(commands)[:40]!r}")
    for c in cmds:
        if isinstance(c, str) and c in NICONICO_POSITIONS:
            return NICONICO_POSITIONS[c]
    return "scroll", 1


def _iso_to_unix(s):
    """Unix seconds of an ISO 8601 date; a number is passed through (checked when stored)."""
    if s is None or isinstance(s, (int, float)):
        return s
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp())
    except (ValueError, OverflowError, OSError):
        raise _BadField("malformed_post_time", f"date={str(s)[:40]!r}") from None


def _json_values(chunks: Iterator[str], source: str | Path) -> Iterator[tuple[str, object]]:
    """The entries of a top-level JSON list, decoded one at a time from the text chunks;
    or ``("object", value)`` once for a top-level object (parsed whole, size-limited)."""
    dec = json.JSONDecoder()
    buf, pos, done = "", 0, False

    def more() -> bool:
        """Read on until the unparsed text at least doubles (keeps re-parsing linear)."""
        nonlocal buf, pos, done
        pending = buf[pos:]
        parts, size = [pending], len(pending)
        while not done and size < max(2 * len(pending), _CHUNK_BYTES):
            nxt = next(chunks, None)
            if nxt is None:
                done = True
                break
            parts.append(nxt)
            size += len(nxt)
        if len(parts) == 1:
            return False
        buf, pos = "".join(parts), 0
        return True

    def skip_ws() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or not more():
                return buf[pos] if pos < len(buf) else ""

    def decode_one():
        nonlocal pos
        skip_ws()
        while True:
            try:
                value, end = dec.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if more():
                    continue
                raise DanmakuError(f"{source}: malformed JSON: {exc.msg} at character {exc.pos}") from None
            # a number or literal cut by the chunk boundary decodes short: read on to be sure
            if end == len(buf) and more():
                continue
            pos = end
            return value

    first = skip_ws()
    if first == "{":
        parts, size = [buf[pos:]], len(buf) - pos
        for nxt in chunks:
            parts.append(nxt)
            size += len(nxt)
            if size > MAX_JSON_OBJECT_BYTES:
                raise DanmakuError(f"{source}: a JSON object (the nvComment API layout) over "
                                   f"{MAX_JSON_OBJECT_BYTES // 2**20} MiB is refused; give a list of comments")
        try:
            yield "object", json.loads("".join(parts))
        except json.JSONDecodeError as exc:
            raise DanmakuError(f"{source}: malformed JSON: {exc.msg} at line {exc.lineno}, "
                               f"column {exc.colno}") from None
        return
    if first != "[":
        raise DanmakuError(f"{source}: JSON is neither a list nor an object of comments")
    pos += 1
    if skip_ws() == "]":
        pos += 1
    else:
        while True:
            yield "entry", decode_one()
            c = skip_ws()
            pos += 1
            if c == "]":
                break
            if c != ",":
                raise DanmakuError(f"{source}: malformed JSON: expected ',' or ']' after a list entry, got {c!r}")
    if skip_ws():
        raise DanmakuError(f"{source}: malformed JSON: extra data after the list")


def parse_niconico_json(chunks: Iterator[str], source: str | Path, out: _Comments) -> None:
    """Comments of a Niconico JSON document (three layouts, see the module docstring)."""
    dropped = out.dropped

    def entries():
        for kind, value in _json_values(chunks, source):
            if kind == "object":
                threads = (value.get("data") or value).get("threads") if isinstance(value.get("data") or value,
                                                                                    dict) else None
                if not isinstance(threads, list):
                    raise DanmakuError(f"{source}: JSON object without data.threads: not a Niconico comment file")
                for th in threads:
                    comments = th.get("comments") if isinstance(th, dict) else None
                    for c in comments if isinstance(comments, list) else []:
                        yield "api", c
            elif isinstance(value, dict) and "chat" in value:
                yield "legacy", value["chat"]
            elif isinstance(value, dict) and ("thread" in value or "leaf" in value or "global_num_res" in value
                                              or "ping" in value):
                continue  # legacy metadata entries
            else:
                yield "flat", value

    try:
        for i, (kind, c) in enumerate(entries()):
            where = f"entry {i}"
            if not isinstance(c, dict):
                dropped.add("malformed_comment", 1, [where])
                continue
            try:
                if kind == "api":
                    t, body = c.get("vposMs"), c.get("body")
                    t = _time(t) / 1000 if isinstance(t, (int, float)) and not isinstance(t, bool) else None
                    mode, code = _nico_mode(c.get("commands"))
                    user, post, cid = c.get("userId"), _iso_to_unix(c.get("postedAt")), c.get("id") or c.get("no")
                else:
                    t, body = c.get("vpos"), c.get("content")
                    t = _time(t) / 100 if isinstance(t, (int, float)) and not isinstance(t, bool) else None
                    mode, code = _nico_mode(c.get("mail"))
                    user, post, cid = c.get("user_id"), _iso_to_unix(c.get("date")), c.get("id", c.get("no"))
            except _BadField as exc:
                dropped.add(exc.reason, 1, [f"{where}: {exc}"])
                continue
            if t is None or not isinstance(body, str):
                dropped.add("malformed_comment", 1, [f"{where}: {json.dumps(c, ensure_ascii=False)[:60]}"])
                continue
            out.add(where, t, mode, code, body, user, post, cid)
    except RecursionError:
        raise DanmakuError(f"{source}: malformed JSON: nested too deeply to be a comment file") from None


def parse_comment_csv(path: Path, encoding: str, source: str | Path, out: _Comments, sep: str = ",") -> None:
    """Comments of a CSV/TSV table (read by polars as text, then checked row by row)."""
    import io

    if encoding == "utf-8":
        data = path
    else:  # polars reads UTF-8 only: transcode chunk by chunk
        data = io.BytesIO()
        for text in _text_chunks(path, encoding):
            data.write(text.encode("utf-8"))
        data.seek(0)
    try:
        df = pl.read_csv(data, separator=sep, infer_schema_length=0, encoding="utf8")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DanmakuError(f"{source}: cannot read comment CSV: {str(exc).strip().splitlines()[0]}") from None
    tcol = next((c for c in ("time_s", "time", "t") if c in df.columns), None)
    xcol = next((c for c in ("text", "content", "comment", "body") if c in df.columns), None)
    if tcol is None or xcol is None:
        raise DanmakuError(f"{source}: comment CSV needs time_s and text columns; it has {', '.join(df.columns)}")
    cols = [tcol, xcol] + [c if c in df.columns else None for c in ("mode", "user_hash", "post_time", "comment_id")]
    exprs = [pl.col(c) if c else pl.lit(None, dtype=pl.String).alias(f"_absent{k}") for k, c in enumerate(cols)]
    for i, (t, text, mode, user, post, cid) in enumerate(df.select(exprs).iter_rows()):
        try:
            t = _time(t)
        except (TypeError, ValueError):
            t = float("nan")
        mode = (mode or "scroll").strip().lower()
        code = None
        if mode.isdigit():
            code = mode
            mode = BILIBILI_MODES.get(int(mode), "other")
        elif mode not in MODES:
            mode = "other"
        out.add(f"row {i + 1}", t, mode, code, text if text is not None else "", user, post, cid or str(i))


def detect_format(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in (".xml",):
        return "bilibili"
    if suffix in (".json",):
        return "niconico"
    if suffix in (".csv", ".tsv"):
        return "csv"
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if s.startswith(b"<"):
        return "bilibili"
    if s[:1] in (b"[", b"{"):
        return "niconico"
    return "csv"


def parse_danmaku(path: str | Path, video_id: str | None = None, fmt: str | None = None,
                  encoding: str | None = None, max_bytes: int = 256 * 1024 * 1024,
                  dropped: Dropped | None = None) -> pl.DataFrame:
    """Parse one danmaku file into :data:`COMMENT_SCHEMA` rows (uncleaned, ``n_repeats`` 1).

    The file is read, decoded and parsed in 1 MiB chunks, and comments are kept
    as Arrow columns, so memory stays within a few times the comment table
    (``bench/RESULTS.md``: 1M comments). Raises :class:`DanmakuError` for a
    missing, unreadable, empty, oversized, undecodable or malformed file; a
    malformed comment is dropped and counted in ``dropped``.
    """
    path = Path(path)
    dropped = dropped if dropped is not None else Dropped()
    if not path.is_file():
        raise DanmakuError(f"{path}: danmaku file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise DanmakuError(f"{path}: {size} bytes is over the danmaku size limit of {max_bytes}")
    head = next(_chunks(path, 4096), b"")
    if not head.strip() and not any(c.strip() for c in _chunks(path)):
        raise DanmakuError(f"{path}: danmaku file is empty")
    fmt = fmt or detect_format(path, head[:64])
    prefer = ("shift_jis", "gb18030") if fmt == "niconico" else LEGACY_ENCODINGS
    enc = detect_encoding(path, head, encoding, prefer)
    if enc not in ("utf-8", "utf-8-sig"):
        log.info("%s: decoded as %s", path, enc)
    out = _Comments(dropped)
    if fmt not in ("bilibili", "niconico", "csv"):
        raise DanmakuError(f"{path}: unknown danmaku format '{fmt}' (bilibili, niconico, csv)")
    try:
        if fmt == "bilibili":
            parse_xml_comments(_text_chunks(path, enc), path, out)
        elif fmt == "niconico":
            parse_niconico_json(_text_chunks(path, enc), path, out)
        else:
            parse_comment_csv(path, enc, path, out, "\t" if path.suffix.lower() == ".tsv" else ",")
    except (ValueError, TypeError, OverflowError, RecursionError, UnicodeError, pl.exceptions.PolarsError) as exc:
        # what the content of a file can still raise past the per-comment checks (a
        # number with more digits than Python converts, ...): the file, not the run
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DanmakuError(f"{path}: cannot parse the {fmt} file: {type(exc).__name__}: {msg[:200]}") from None
    vid = video_id or path.stem
    return out.frame().with_columns(pl.lit(vid, dtype=pl.String).alias("video_id"),
                                    pl.lit(1, dtype=pl.Int32).alias("n_repeats")).select(list(COMMENT_SCHEMA))


# --------------------------------------------------------------------------- cleaning


def normalise_text(text: str, max_run: int = 4) -> str:
    """Collapse whitespace and shorten runs of one character to ``max_run``."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"(.)\1{%d,}" % max_run, lambda m: m.group(1) * max_run, text)


def clean_comments(df: pl.DataFrame, config: DanmakuParseConfig | None = None,
                   duration_s: float | None = None, dropped: Dropped | None = None) -> pl.DataFrame:
    """Clean one video's (or several videos') comments; see the module docstring.

    ``duration_s`` (when known) drops comments at or after the end; with
    several videos pass a ``duration_s`` column instead.
    """
    config = config or DanmakuParseConfig()
    dropped = dropped if dropped is not None else Dropped()
    # normalised once per distinct text (danmaku repeat a lot: a fraction of the Python calls)
    distinct = df.select(pl.col("text").fill_null("").unique())["text"]
    normalised = distinct.map_elements(lambda s: normalise_text(s, config.max_run), return_dtype=pl.String)
    df = df.with_row_index("_i").with_columns(
        pl.col("text").fill_null("").replace_strict(distinct, normalised, return_dtype=pl.String))
    del distinct, normalised
    empty = df.filter(pl.col("text") == "")
    dropped.add("empty_text", empty.height,
                (f"{v} #{c}" for v, c in empty.select("video_id", "comment_id").head(3).iter_rows()))
    df = df.filter(pl.col("text") != "")
    t = pl.col("time_s")
    # impossible only when not a finite number or negative: live-stream replays run past
    # 100 hours, so there is no fixed cap; the video's duration (when known) is the bound
    impossible = t.is_null() | ~t.is_finite() | (t < 0)
    bad = df.filter(impossible)
    dropped.add("impossible_time", bad.height,
                (f"{v} t={x}" for v, x in bad.select("video_id", "time_s").head(3).iter_rows()))
    df = df.filter(~impossible)
    dur = None
    if "duration_s" in df.columns:
        dur = pl.col("duration_s")
    elif duration_s is not None and math.isfinite(duration_s):
        dur = pl.lit(float(duration_s))
    if dur is not None:
        late = df.filter(after_video_end(t, dur))
        dropped.add("after_video_end", late.height,
                    (f"{v} t={x:.2f}" for v, x in late.select("video_id", "time_s").head(3).iter_rows()))
        df = df.filter(~after_video_end(t, dur))
    for mode in sorted(set(df["mode"].unique().to_list()) - set(config.keep_modes)):
        n = df.filter(pl.col("mode") == mode).height
        dropped.add(f"mode_dropped_{mode}", n)
    df = df.filter(pl.col("mode").is_in(list(config.keep_modes)))
    if config.collapse_spam:
        # one sort and two window expressions (no join): the first copy of a user's text
        # (in time order) is kept and carries the group's size in n_repeats
        key = ["video_id", "user_hash", "text"]
        has_user = pl.col("user_hash").is_not_null()
        df = df.sort("video_id", "time_s", "_i").with_columns(
            pl.when(has_user).then(pl.int_range(pl.len()).over(key)).otherwise(0).alias("_k"),
            pl.when(has_user).then(pl.len().over(key)).otherwise(1).cast(pl.Int32).alias("n_repeats"))
        n_spam = df.filter(pl.col("_k") > 0).height
        df = df.filter(pl.col("_k") == 0).drop("_k")
        if n_spam:
            ex = df.filter(pl.col("n_repeats") > 1).head(3)
            dropped.add("spam_repeat", n_spam,
                        (f"{v}: {x!r} x{n}" for v, x, n in ex.select("video_id", "text", "n_repeats").iter_rows()))
    return df.sort("_i").select(list(COMMENT_SCHEMA))


def parse_and_clean(path: str | Path, video_id: str | None = None, config: DanmakuParseConfig | None = None,
                    duration_s: float | None = None, fmt: str | None = None, encoding: str | None = None,
                    dropped: Dropped | None = None) -> pl.DataFrame:
    """:func:`parse_danmaku` then :func:`clean_comments` for one file."""
    config = config or DanmakuParseConfig()
    dropped = dropped if dropped is not None else Dropped()
    raw = parse_danmaku(path, video_id, fmt, encoding, config.max_bytes, dropped)
    return clean_comments(raw, config, duration_s, dropped)


def parse_probe_videos(probe: pl.DataFrame, root: str | Path, config: DanmakuParseConfig | None = None,
                       dropped: Dropped | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every ingested video's danmaku: ``probe`` is the ingest stage's ``probe.parquet``.

    Reads ``danmaku_path`` (relative to ``root`` = ``results/{dataset}``) of
    each ``ok`` video and drops comments at or past its end
    (:func:`evoke.labels.common.probe_durations`: how far the file decodes, else
    ``duration_s``; ``after_video_end``). Times are taken as
    they are in the file: relative to the video as ingested (a file for the
    uncut source of a video the manifest cuts must be shifted beforehand).
    Returns ``(comments, failures)``; a file that cannot be parsed is one
    failures row (``video_id, stage, shard, error``) and the other videos go on.
    """
    config = config or DanmakuParseConfig()
    dropped = dropped if dropped is not None else Dropped()
    root = Path(root)
    frames, failures = [], []
    ok = probe.filter(pl.col("status") == "ok") if "status" in probe.columns else probe
    has = ok.filter(pl.col("danmaku_path").is_not_null()) if "danmaku_path" in ok.columns else ok.clear()
    log.info("danmaku: %d of %d ingested videos have a danmaku file", has.height, ok.height)
    ends = video_durations(has, "probe table")
    from tqdm import tqdm

    for r in tqdm(has.sort("video_id").iter_rows(named=True), total=has.height, desc="danmaku", unit="video",
                  disable=None):
        try:
            frames.append(parse_and_clean(root / r["danmaku_path"], r["video_id"], config,
                                          ends.get(r["video_id"]), dropped=dropped))
        except LabelError as exc:
            log.warning("%s", exc)
            failures.append({"video_id": r["video_id"], "stage": "labels", "shard": r.get("shard"),
                             "error": f"danmaku: {exc}"})
    comments = pl.concat(frames) if frames else pl.DataFrame(schema=COMMENT_SCHEMA)
    fail = pl.DataFrame(failures, schema={"video_id": pl.String, "stage": pl.String, "shard": pl.String,
                                          "error": pl.String})
    return comments, fail

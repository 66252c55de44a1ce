"""Danmaku parsing and cleaning: real files, 8/9-field p, encodings, malformed and hostile XML."""

from __future__ import annotations

import json

import polars as pl
import pytest

from evoke.danmaku.parse import (
    COMMENT_SCHEMA,
    DanmakuError,
    DanmakuParseConfig,
    clean_comments,
    parse_and_clean,
    parse_danmaku,
    parse_probe_videos,
)
from evoke.labels.common import Dropped, LabelError

from .conftest import FIXTURES, SHARED, demo_file


def xml_doc(comments, fields=8, decl='<?xml version="1.0" encoding="UTF-8"?>'):
    ds = []
    for i, (t, mode, text, user) in enumerate(comments):
        p = [f"{t}", str(mode), "25", "16777215", str(1600000000 + i), "0", user, str(1000 + i)]
        if fields == 9:
            p.append("5")
        ds.append(f'<d p="{",".join(p)}">{text}</d>')
    return f"{decl}<i><chatid>1</chatid>{''.join(ds)}</i>"


def test_real_bilibili_fixture():
    d = Dropped()
    raw = parse_danmaku(FIXTURES / "bilibili_8729348.xml", dropped=d)
    assert raw.height == 1239 and not d
    assert raw.schema == pl.Schema(COMMENT_SCHEMA)
    assert raw["video_id"].unique().to_list() == ["bilibili_8729348"]
    assert 0 <= raw["time_s"].min() and raw["time_s"].max() == pytest.approx(220.054, abs=0.01)
    assert dict(raw["mode"].value_counts().rows()) == {"scroll": 801, "top": 124, "bottom": 35, "positioned": 279}
    assert raw["user_hash"].null_count() == 0 and raw["post_time"].min() > 1_400_000_000
    clean = clean_comments(raw, dropped=d)
    assert d.counts["mode_dropped_positioned"] == 279 and d.counts["spam_repeat"] > 0
    assert clean.height == 1239 - d.total
    assert clean["n_repeats"].sum() + 279 == 1239  # every dropped repeat is counted on its first copy
    # a user's repeats collapse onto the first copy
    spam = clean.filter(pl.col("n_repeats") > 1)
    assert spam.height > 0


def test_real_niconico_fixture_with_duration():
    d = Dropped()
    c = parse_and_clean(FIXTURES / "niconico_sm9.json", "sm9", duration_s=320.0, dropped=d)
    assert c["video_id"].unique().to_list() == ["sm9"]
    assert d.counts["after_video_end"] > 0  # sm9 has comments timed past its 5:20
    assert c["time_s"].max() < 320
    assert set(c["mode"].unique().to_list()) == {"scroll", "top", "bottom"}
    assert c.height + d.total == 954


@pytest.mark.parametrize("name", ["bilibili_8729348.xml", "niconico_sm9.json", "niconico_sm2959233.json"])
def test_every_shared_danmaku_file(name):
    p = SHARED / "danmaku" / name
    if not p.is_file():
        pytest.skip(f"{p} not available")
    raw = parse_danmaku(p)
    expected = {"bilibili_8729348.xml": (1239, 220.05), "niconico_sm9.json": (954, 410.33),
                "niconico_sm2959233.json": (1250, 846.7)}[name]
    assert raw.height == expected[0] and raw["time_s"].max() == pytest.approx(expected[1], abs=0.01)
    assert raw["text"].null_count() == 0 and (raw["time_s"] >= 0).all()


def test_eight_and_nine_fields_and_cleaning(tmp_path):
    comments = [(1.5, 1, "好看", "u1"), (2.0, 5, "哈哈哈哈哈哈哈哈", "u2"), (3.0, 4, "  ", "u3"),
                (4.0, 1, "前排", "u1"), (4.5, 1, "前排", "u1"), (5.0, 1, "前排", "u2"),
                (6.0, 7, "[0,0,1]", "u4"), (7.0, 8, "code", "u4"), (-2.0, 1, "负时间", "u5"),
                (1e9, 1, "absurd", "u5"), (12.0, 1, "过了片尾", "u6"), (1.0, 6, "逆向", "u7")]
    for fields in (8, 9):
        p = tmp_path / f"v{fields}.xml"
        p.write_text(xml_doc(comments, fields), encoding="utf-8")
        d = Dropped()
        c = parse_and_clean(p, duration_s=10.0, dropped=d)
        # 1e9 s is not impossible in itself (no fixed cap), only past this video's end
        assert d.counts == {"empty_text": 1, "spam_repeat": 1, "mode_dropped_positioned": 1, "mode_dropped_code": 1,
                            "impossible_time": 1, "after_video_end": 2}
        assert c["text"].to_list() == ["好看", "哈哈哈哈", "前排", "前排", "逆向"]
        assert c.filter(pl.col("user_hash") == "u1")["n_repeats"].to_list() == [1, 2]
        assert c["mode"].to_list() == ["scroll", "top", "scroll", "scroll", "reverse"]
    # keep only scrolling comments, no collapsing
    d = Dropped()
    c = parse_and_clean(tmp_path / "v8.xml", config=DanmakuParseConfig(keep_modes=("scroll",), collapse_spam=False),
                        dropped=d)
    assert "spam_repeat" not in d.counts and c.filter(pl.col("text") == "前排").height == 3


def test_malformed_p_is_counted(tmp_path):
    p = tmp_path / "m.xml"
    p.write_text('<i><d p="1.0,1,25">short</d><d p="abc,1,25,0,0,0,u,1">bad time</d>'
                 '<d p="2.0,1,25,0,0,0,u,1">ok</d><d>no p</d></i>')
    d = Dropped()
    raw = parse_danmaku(p, dropped=d)
    assert raw["text"].to_list() == ["ok"] and d.counts["malformed_p"] == 3


@pytest.mark.parametrize("content, match", [
    ("<i><d p='1,1,25,0,0,0,u,1'>unclosed</i>", "malformed XML"),
    ("<i><d p='1,1,25,0,0,0,u,1'>truncated", "malformed XML"),
    ("not xml at all", "malformed XML"),
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     "<i><d p='1,1,25,0,0,0,u,1'>&lol2;</d></i>", "refused"),
    ('<?xml version="1.0"?><!DOCTYPE i SYSTEM "http://example.com/x.dtd"><i></i>', "refused"),
    ('<i><d p="1,1,25,0,0,0,u,1">&ext;</d></i>', "undefined entity"),
])
def test_malformed_and_hostile_xml_is_refused(tmp_path, content, match):
    p = tmp_path / "bad.xml"
    p.write_text(content)
    with pytest.raises(DanmakuError, match=match) as e:
        parse_danmaku(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_predefined_entities_work(tmp_path):
    p = tmp_path / "e.xml"
    p.write_text('<i><d p="1,1,25,0,0,0,u,1">a &amp; b &lt;3 &#21704;</d></i>')
    assert parse_danmaku(p)["text"].to_list() == ["a & b <3 哈"]


def test_empty_huge_missing(tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"")
    with pytest.raises(DanmakuError, match="empty"):
        parse_danmaku(tmp_path / "empty.xml")
    big = tmp_path / "big.xml"
    big.write_text(xml_doc([(1.0, 1, "x" * 100, "u")] * 50))
    with pytest.raises(DanmakuError, match="over the danmaku size limit"):
        parse_danmaku(big, max_bytes=1000)
    with pytest.raises(DanmakuError, match="not found"):
        parse_danmaku(tmp_path / "missing.xml")


def test_gbk_and_shift_jis(tmp_path):
    comments = [(1.0, 1, "弹幕测试，哈哈", "u1"), (2.0, 5, "太好看了", "u2")]
    gbk = tmp_path / "gbk.xml"
    gbk.write_bytes(xml_doc(comments, decl='<?xml version="1.0" encoding="GBK"?>').encode("gbk"))
    assert parse_danmaku(gbk)["text"].to_list() == ["弹幕测试，哈哈", "太好看了"]
    undeclared = tmp_path / "gb_undeclared.xml"
    undeclared.write_bytes(xml_doc(comments, decl="").encode("gb18030"))
    assert parse_danmaku(undeclared)["text"].to_list() == ["弹幕测试，哈哈", "太好看了"]
    sj = tmp_path / "sj.json"
    sj.write_bytes(json.dumps([{"id": 1, "vpos": 150, "content": "うぽつ", "date": 1637314561, "mail": ["ue"]},
                               {"id": 2, "vpos": 300, "content": "わこつ", "date": 1637314562, "mail": "shita 184"}],
                              ensure_ascii=False).encode("shift_jis"))
    c = parse_danmaku(sj)
    assert c["text"].to_list() == ["うぽつ", "わこつ"] and c["time_s"].to_list() == [1.5, 3.0]
    assert c["mode"].to_list() == ["top", "bottom"]
    forced = parse_danmaku(gbk, encoding="gbk")
    assert forced.height == 2
    (tmp_path / "bin.xml").write_bytes(b"\xff\xfe\x00\xd8" * 10 + b"\x81")
    with pytest.raises(LabelError, match="(cannot decode|not valid utf-16).*pass --encoding"):
        parse_danmaku(tmp_path / "bin.xml")


def test_niconico_layouts_and_csv(tmp_path):
    api = {"data": {"threads": [{"comments": [
        {"id": "a", "no": 1, "vposMs": 1234, "body": "すごい", "commands": ["ue"], "userId": "x",
         "postedAt": "2021-11-19T18:36:01+09:00"},
        {"id": "b", "vposMs": None, "body": "no time"}]}]}}
    p = tmp_path / "api.json"
    p.write_text(json.dumps(api))
    d = Dropped()
    c = parse_danmaku(p, dropped=d)
    assert c.rows()[0][:5] == ("api", 1.234, "top", 5, "すごい") and d.counts["malformed_comment"] == 1
    legacy = [{"thread": {"resultcode": 0}}, {"chat": {"no": 1, "vpos": 500, "content": "wwww", "mail": "184 shita",
                                                       "user_id": "abc", "date": 1600000000}}]
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    c = parse_danmaku(tmp_path / "legacy.json")
    assert c.select("time_s", "mode", "user_hash").rows() == [(5.0, "bottom", "abc")]
    (tmp_path / "c.csv").write_text("time_s,text,mode,user_hash\n1.5,hello,1,u\nx,bad time,1,u\n2,top one,top,v\n")
    d = Dropped()
    c = parse_and_clean(tmp_path / "c.csv", dropped=d)
    assert c.select("time_s", "mode").rows() == [(1.5, "scroll"), (2.0, "top")] and d.counts["impossible_time"] == 1
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DanmakuError, match="malformed JSON"):
        parse_danmaku(tmp_path / "bad.json")


def test_probe_mode_records_failures(tmp_path):
    root = tmp_path / "results" / "d"
    vids = root / "ingest" / "videos"
    # good's file decodes to 5 s of its header's 12 s: 5.0 s is its end (no frame at or past it)
    for vid, content in [("good", xml_doc([(1.0, 1, "好", "u"), (5.0, 1, "晚", "u2"), (9.0, 1, "迟", "u3")])),
                         ("bad", "<i><d>")]:
        (vids / vid).mkdir(parents=True)
        (vids / vid / "danmaku.xml").write_text(content)
    probe = pl.DataFrame({"video_id": ["good", "bad", "none", "failed"], "status": ["ok", "ok", "ok", "failed"],
                          "shard": ["s00000"] * 4, "duration_s": [12.0, 5.0, 5.0, None],
                          "decoded_duration_s": [5.0, 5.0, 5.0, None],
                          "danmaku_path": ["ingest/videos/good/danmaku.xml", "ingest/videos/bad/danmaku.xml",
                                           None, None]})
    d = Dropped()
    comments, failures = parse_probe_videos(probe, root, dropped=d)
    assert comments["text"].to_list() == ["好"] and d.counts["after_video_end"] == 2
    assert failures.select("video_id", "stage").rows() == [("bad", "labels")]
    assert "malformed XML" in failures["error"][0]


def test_demo_danmaku_files():
    import re

    files = sorted(demo_file("danmaku").glob("*.xml"))
    assert files
    n_fields = set()
    for f in files:
        text = f.read_text(encoding="utf-8")
        n_fields |= {m.count(",") + 1 for m in re.findall(r'p="([^"]*)"', text)}
        d = Dropped()
        c = parse_and_clean(f, dropped=d)
        assert c.height > 0 and "malformed_p" not in d.counts
    assert n_fields == {8, 9}


def test_a_malformed_field_drops_only_its_comment(tmp_path):
    csv = tmp_path / "fields.csv"
    csv.write_text("time_s,text,mode,user_hash,post_time\n"
                   "1.0,ok,1,u1,1600000000\n2.0,abc time,1,u2,abc\n3.0,nan time,1,u3,nan\n"
                   "4.0,huge time,1,u4,1e20\n5.0,huge mode,99999999999,u5,1600000001\n"
                   "6.0,also ok,1,u6,\n")
    d = Dropped()
    c = parse_and_clean(csv, dropped=d)
    assert c["text"].to_list() == ["ok", "also ok"] and c["post_time"].to_list() == [1600000000, None]
    assert d.counts == {"malformed_post_time": 3, "malformed_mode": 1}
    xml = tmp_path / "fields.xml"
    xml.write_text('<i><d p="1,1,25,0,1600000000,0,u,1">ok</d><d p="2,4294967297,25,0,1600000000,0,u,2">mode</d>'
                   '<d p="3,1,25,0,99999999999999999999999,0,u,3">post</d><d p="nan,1,25,0,1,0,u,4">t</d>'
                   '<d p="inf,1,25,0,1,0,u,5">t2</d></i>')
    d = Dropped()
    c = parse_and_clean(xml, dropped=d)
    assert c["text"].to_list() == ["ok"]
    assert d.counts == {"malformed_mode": 1, "malformed_post_time": 1, "impossible_time": 2}
    nico = tmp_path / "fields.json"
    nico.write_text('[{"vpos": 100, "content": "ok", "date": 1600000000},'
                    ' {"vpos": 200, "content": "nan date", "date": NaN},'
                    ' {"vpos": 300, "content": "huge date", "date": 1e300},'
                    ' {"vpos": 400, "content": "bad date", "date": "yesterday"},'
                    ' {"vpos": 500, "content": "bad mail", "mail": 5},'
                    ' {"vpos": 600, "content": "ok too", "mail": "ue"}]')
    d = Dropped()
    c = parse_and_clean(nico, dropped=d)
    assert c["text"].to_list() == ["ok", "ok too"] and d.counts == {"malformed_post_time": 3, "malformed_mode": 1}


def test_deeply_nested_json_and_unknown_xml_are_refused(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DanmakuError, match="nested too deeply"):
        parse_danmaku(deep)
    obj = tmp_path / "deep_obj.json"
    obj.write_text('{"data": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(DanmakuError, match="nested too deeply"):
        parse_danmaku(obj)
    html = tmp_path / "page.xml"
    html.write_text("<html><body>not danmaku</body></html>")
    with pytest.raises(DanmakuError, match="holds no comments"):
        parse_danmaku(html)
    digits = tmp_path / "digits.json"  # more digits than Python turns into an int
    digits.write_text('[{"vpos": ' + "9" * 5000 + ', "content": "x"}]')
    with pytest.raises(DanmakuError, match="digits.json: "):
        parse_danmaku(digits)
    big = tmp_path / "big_int.json"  # an int past float's range: not a finite time
    big.write_text('[{"vpos": 1' + "0" * 400 + ', "content": "x"}, {"vpos": 5, "content": "ok"}]')
    d = Dropped()
    assert parse_and_clean(big, dropped=d)["text"].to_list() == ["ok"] and d.counts == {"impossible_time": 1}
    (tmp_path / "empty_i.xml").write_text("<i></i>")
    assert parse_danmaku(tmp_path / "empty_i.xml").height == 0  # a Bilibili file without comments


def test_legacy_niconico_xml_and_undeclared_shift_jis(tmp_path):
    doc = ('<packet><thread thread="1" last_res="3" ticket="0x1"/>'
           '<chat thread="1" no="1" vpos="150" date="1190000000" mail="184" user_id="abc">うぽつ</chat>'
           '<chat thread="1" no="2" vpos="300" date="1190000001" mail="ue red" user_id="def">わこつ</chat>'
           '<chat thread="1" no="3" date="1190000002">時間なし</chat>'
           '<chat thread="1" no="4" vpos="612000" mail="shita">百時間後の弾幕</chat></packet>')
    for enc, decl in (("utf-8", ""), ("shift_jis", "")):
        p = tmp_path / f"nico_{enc}.xml"
        p.write_bytes((decl + doc).encode(enc))
        d = Dropped()
        c = parse_danmaku(p, dropped=d)
        assert c["text"].to_list() == ["うぽつ", "わこつ", "百時間後の弾幕"], enc
        assert c.select("time_s", "mode", "user_hash", "post_time", "comment_id").rows()[:2] == [
            (1.5, "scroll", "abc", 1190000000, "1"), (3.0, "top", "def", 1190000001, "2")]
        assert d.counts == {"malformed_comment": 1}
        # 170 hours into a live-stream replay: kept when the duration is unknown or longer
        assert parse_and_clean(p)["time_s"].max() == 6120.0
    c = parse_and_clean(tmp_path / "nico_shift_jis.xml", duration_s=100 * 3600.0)
    assert c["text"].to_list()[-1] == "百時間後の弾幕"
    # valid bytes in both GB18030 and Shift-JIS that read as rare characters in both
    odd = tmp_path / "odd.xml"
    odd.write_bytes(b'<i><d p="1,1,25,0,0,0,u,1">' + b"\xaa\xab\xac\xad" * 20 + b"</d></i>")
    with pytest.raises(DanmakuError, match="no legacy encoding reads plausibly.*--encoding"):
        parse_danmaku(odd)
    assert parse_danmaku(odd, encoding="gb18030").height == 1


def test_probe_mode_keeps_going_past_every_unreadable_file(tmp_path):
    root = tmp_path / "results" / "d"
    files = {"good": xml_doc([(1.0, 1, "好", "u")]), "deep": "[" * 100_000, "bad_xml": "<i><d>",
             "html": "<html/>", "fields": "time_s,text,post_time\n1,ok,1e20\n2,fine,\n"}
    paths = {}
    for vid, content in files.items():
        ext = {"deep": "json", "fields": "csv"}.get(vid, "xml")
        (root / "ingest" / "videos" / vid).mkdir(parents=True)
        (root / "ingest" / "videos" / vid / f"danmaku.{ext}").write_text(content)
        paths[vid] = f"ingest/videos/{vid}/danmaku.{ext}"
    paths["gone"] = "ingest/videos/gone/danmaku.xml"
    probe = pl.DataFrame({"video_id": list(paths), "status": ["ok"] * len(paths), "shard": ["s00000"] * len(paths),
                          "duration_s": [10.0] * len(paths), "danmaku_path": list(paths.values())})
    d = Dropped()
    comments, failures = parse_probe_videos(probe, root, dropped=d)
    assert comments.select("video_id", "text").rows() == [("fields", "fine"), ("good", "好")]
    assert d.counts == {"malformed_post_time": 1}
    assert sorted(failures["video_id"]) == ["bad_xml", "deep", "gone", "html"]
    assert all("\n" not in e for e in failures["error"])


def test_cli_with_several_files_records_the_bad_one_and_goes_on(tmp_path):
    from evoke.cli import main

    (tmp_path / "a.xml").write_text(xml_doc([(1.0, 1, "好", "u")]), encoding="utf-8")
    (tmp_path / "b.json").write_text("[" * 100_000)
    out, failures = tmp_path / "c.parquet", tmp_path / "f.parquet"
    assert main(["danmaku", "parse", str(tmp_path / "a.xml"), str(tmp_path / "b.json"), "--out", str(out),
                 "--failures", str(failures)]) == 0
    assert pl.read_parquet(out)["video_id"].to_list() == ["a"]
    f = pl.read_parquet(failures)
    assert f["video_id"].to_list() == ["b"] and "nested too deeply" in f["error"][0]
    assert main(["danmaku", "parse", str(tmp_path / "b.json"), "--out", str(out)]) == 2  # one file: its error


@pytest.mark.parametrize("name", ["niconico_sm9.json", "bilibili_8729348.xml"])
@pytest.mark.parametrize("encoding", ["shift_jis", "gb18030"])
def test_real_files_in_legacy_encodings_without_a_declaration(tmp_path, name, encoding):
    """Each real file re-encoded (no BOM, no declaration) reads back as the same comments:
    Japanese and Chinese in either encoding, told apart by their characters alone."""
    import re

    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", (FIXTURES / name).read_text(encoding="utf-8"))
    p = tmp_path / name
    p.write_bytes(text.encode(encoding, errors="replace"))  # the few characters it lacks become '?'
    want = [t.encode(encoding, errors="replace").decode(encoding) for t in parse_danmaku(FIXTURES / name)["text"]]
    assert parse_danmaku(p)["text"].to_list() == want

"""LIRIS-ACCEDE (Baveye et al. 2015), the discrete annotations, as released.

Released files: ``LIRIS-ACCEDE-annotations/annotations/ACCEDEranking.txt``
and ``ACCEDEsets.txt`` (tab-separated, one header line) and
``LIRIS-ACCEDE-data/data/`` with the 9,800 excerpts (``ACCEDE00000.mp4``
...) and ``ACCEDEdescription.xml``. Columns, as released:

* ``ACCEDEranking.txt``: ``id, name, valenceRank, arousalRank, valenceValue,
  arousalValue, valenceVariance, arousalVariance`` (ranks 0 .. 9,799 from the
  pairwise comparisons; values the ranks regressed onto the rating scale,
  with their variances);
* ``ACCEDEsets.txt``: ``id, name, set`` with 1 = learning, 2 = validation,
  0 = test (evoke's ``train``, ``val``, ``test``);
* ``ACCEDEdescription.xml`` (optional): per ``<media>`` its ``<id>``,
  ``<name>`` and ``<movie>`` (the film the excerpt is cut from).

SOURCE is the folder holding ``data/`` (the excerpts) and the two text files,
either directly or under ``annotations/`` (``--annotations DIR`` points
elsewhere, e.g. the separately downloaded annotations archive).

Output ``labels/liris_accede.parquet`` (one row per excerpt, sorted by
``video_id``): ``video_id`` (the file name without its suffix), ``split``,
``accede_id`` (int64), ``movie`` (str, null without the description),
``valence``, ``arousal`` (float64, the released values), ``valence_rank``,
``arousal_rank`` (int32), ``valence_variance``, ``arousal_variance``
(float64). The ``liris_accede`` task trains on it (MSE and Pearson r).

Stops: a missing or unreadable annotation file, a missing column. Dropped and
counted: ``malformed_row`` (an id, rank or value that is not a number, or a
negative variance), ``duplicate_id``, ``no_set`` (an excerpt of the ranking
without a set, or with a set other than 0, 1, 2), ``name_mismatch`` (the two
files name the id differently), ``video_file_missing``.
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from evoke.datasets.base import (
    DatasetError,
    DatasetImporter,
    ImportResult,
    base_config,
    find_file,
    keep_existing_videos,
    local_source,
    manifest_frame,
    register_importer,
)
from evoke.datasets.tables import LIRIS_ACCEDE_SCHEMA
from evoke.labels.common import Dropped, decode_text, require_columns, to_float, with_row_numbers

log = logging.getLogger(__name__)

SETS = {"1": "train", "2": "val", "0": "test"}
RANKING_COLUMNS = ("id", "name", "valenceRank", "arousalRank", "valenceValue", "arousalValue",
                   "valenceVariance", "arousalVariance")
ANNOTATION_FOLDERS = ("", "annotations", "LIRIS-ACCEDE-annotations/annotations")


def read_description(path: Path) -> dict[int, str]:
    """``ACCEDEdescription.xml`` -> {id: movie}."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML: {exc}") from exc
    out = {}
    for media in root.iter("media"):
        try:
            out[int((media.findtext("id") or "").strip())] = (media.findtext("movie") or "").strip() or None
        except ValueError:
            continue
    return out


@register_importer
class LirisAccedeImporter(DatasetImporter):
    name = "liris-accede"
    description = "LIRIS-ACCEDE discrete: ACCEDEranking.txt, ACCEDEsets.txt, data/ACCEDE*.mp4"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--annotations", type=Path, help="folder of ACCEDEranking.txt and ACCEDEsets.txt "
                                                         "(default: SOURCE, SOURCE/annotations)")
        p.add_argument("--no-video-check", dest="check_videos", action="store_false",
                       help="do not check that the excerpts are there")

    def read(self, source: Path, out: Path, annotations: Path | None = None, check_videos: bool = True,
             dataset: str = "liris_accede") -> ImportResult:
        dropped = Dropped()
        folders = ("",) if annotations else ANNOTATION_FOLDERS
        base = annotations or source
        ranking_path = find_file(base, "ACCEDEranking.txt", "LIRIS-ACCEDE ranking", folders)
        sets_path = find_file(base, "ACCEDEsets.txt", "LIRIS-ACCEDE sets", folders)
        ranking = _read_tsv(ranking_path, "LIRIS-ACCEDE ranking")
        require_columns(ranking, RANKING_COLUMNS, ranking_path, "LIRIS-ACCEDE ranking")
        sets = _read_tsv(sets_path, "LIRIS-ACCEDE sets")
        require_columns(sets, ("id", "name", "set"), sets_path, "LIRIS-ACCEDE sets")
        r = with_row_numbers(ranking).select(
            "row", pl.col("id").cast(pl.Int64, strict=False).alias("accede_id"), pl.col("name"),
            pl.col("valenceRank").cast(pl.Int32, strict=False).alias("valence_rank"),
            pl.col("arousalRank").cast(pl.Int32, strict=False).alias("arousal_rank"),
            to_float(pl.col("valenceValue")).alias("valence"), to_float(pl.col("arousalValue")).alias("arousal"),
            to_float(pl.col("valenceVariance")).alias("valence_variance"),
            to_float(pl.col("arousalVariance")).alias("arousal_variance"))
        nums = ["accede_id", "valence_rank", "arousal_rank", "valence", "arousal", "valence_variance",
                "arousal_variance"]
        bad = r.filter(pl.any_horizontal(pl.col(c).is_null() | (pl.col(c).cast(pl.Float64).is_nan())
                                         for c in nums)
                       | (pl.col("valence_variance") < 0) | (pl.col("arousal_variance") < 0)
                       | pl.col("name").is_null() | (pl.col("name") == ""))
        dropped.add_frame("malformed_row", bad)
        r = r.join(bad.select("row"), on="row", how="anti")
        dup = r.filter(pl.int_range(pl.len()).over("accede_id") > 0)
        dropped.add_frame("duplicate_id", dup)
        r = r.join(dup.select("row"), on="row", how="anti")
        s = sets.select(pl.col("id").cast(pl.Int64, strict=False).alias("accede_id"),
                        pl.col("name").alias("set_name"),
                        pl.col("set").replace_strict(SETS, default=None).alias("split"))
        s = s.filter(pl.col("accede_id").is_not_null()).unique("accede_id", keep="first")
        r = r.join(s, on="accede_id", how="left")
        no_set = r.filter(pl.col("split").is_null())
        dropped.add_frame("no_set", no_set, "name")
        r = r.filter(pl.col("split").is_not_null())
        mismatch = r.filter(pl.col("set_name") != pl.col("name"))
        dropped.add_frame("name_mismatch", mismatch, "name")
        r = r.filter(pl.col("set_name") == pl.col("name"))
        data = source / "data"
        desc_path = data / "ACCEDEdescription.xml"
        movies = read_description(desc_path) if desc_path.is_file() else {}
        if not movies:
            log.info("%s: no ACCEDEdescription.xml, the movie column stays empty", desc_path)
        rows = [{"video_id": Path(n).stem, "source": local_source(data, n), "split": sp}
                for n, sp in r.select("name", "split").iter_rows()]
        present = {x["video_id"] for x in keep_existing_videos(rows, dropped, check_videos)}
        table = r.with_columns(
            pl.col("name").map_elements(lambda n: Path(n).stem, return_dtype=pl.String).alias("video_id"),
            pl.col("accede_id").replace_strict(movies, default=None, return_dtype=pl.String).alias("movie"),
        ).filter(pl.col("video_id").is_in(list(present)))
        table = table.select(list(LIRIS_ACCEDE_SCHEMA)).cast(LIRIS_ACCEDE_SCHEMA).sort("video_id")
        dups = table.filter(pl.col("video_id").is_duplicated())
        if dups.height:
            raise DatasetError(f"{ranking_path}: two excerpts share the file name {dups['video_id'][0]!r}")
        manifest = manifest_frame([x for x in rows if x["video_id"] in present])
        config = base_config(dataset, out, {"liris_accede": out / "labels" / "liris_accede.parquet"},
                             ["liris_accede"])
        return ImportResult(manifest, {"liris_accede": table}, config, dropped,
                            {"with_movies": bool(movies)})


def _read_tsv(path: Path, what: str) -> pl.DataFrame:
    """A tab-separated ``.txt`` file (header line) with every column as stripped text."""
    data = path.read_bytes()
    if not data.strip():
        raise DatasetError(f"{path}: {what} is empty")
    text, _ = decode_text(data, path)
    try:
        df = pl.read_csv(io.StringIO(text), separator="\t", infer_schema_length=0)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read {what} (tab-separated): {str(exc).splitlines()[0]}") from exc
    df = df.rename({c: c.strip() for c in df.columns})
    return df.with_columns(pl.col(c).str.strip_chars() for c in df.columns)

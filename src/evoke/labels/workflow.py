"""Helpers of ``workflow/rules/labels.smk``: the ``labels`` config block and CLI flags.

Kept here (not in the rule file) so the rules stay one CLI call each and the
helpers can be tested without Snakemake.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

class LabelSettings:
    """Read access to ``config["labels"]`` with the defaults the rules use.

    ``annotations`` is the folder of the annotation files; without it (null, the
    schema's default) bare file names resolve to nothing, so a dataset with no
    annotations configured builds no labels (and trains nothing) rather than
    failing on missing files.
    """

    def __init__(self, block: dict | None):
        self.block = dict(block or {})
        self.annotations = self.block.get("annotations")

    def get(self, builder: str, key: str, default=None):
        return (self.block.get(builder) or {}).get(key, default)

    def in_annotations(self, name: str) -> str | None:
        """A bare file name is inside the annotations folder (None without one); a path is taken as it is."""
        if os.path.isabs(name) or os.sep in name:
            return name
        return None if self.annotations is None else os.path.join(self.annotations, name)

    def file(self, builder: str, key: str, default: str) -> str | None:
        """An annotation file of a builder, or None when the builder is off (its file set
        to null, or a bare name with no annotations folder)."""
        name = self.get(builder, key, default)
        return None if name is None else self.in_annotations(name)

    def files(self, builder: str, key: str, default: list[str]) -> list[str]:
        found = [self.in_annotations(n) for n in (self.get(builder, key, default) or [])]
        return [f for f in found if f is not None]

    def pretrained_files(self, builder: str) -> list[str]:
        """The files of the builder's ``pretrained`` folder when its ``head`` is ``bert`` (a rule's
        inputs: a changed, added or removed file reruns the training; the folder's own mtime
        misses a file rewritten in place). A name that is no local folder (a hub name) and
        the light head read no file of it."""
        name = self.get(builder, "pretrained")
        if self.get(builder, "head", "light") != "bert" or not name or not os.path.isdir(name):
            return []
        return sorted(str(p) for p in Path(name).rglob("*") if p.is_file())


def cli_flags(**flags) -> str:
    """Keyword settings as shell-quoted ``--flag=value`` words.

    None and False are left out, True gives the bare flag, lists are
    comma-joined, dicts become ``k=v,k=v``; ``--flag=value`` keeps a value such
    as ``-1,1`` from being read as an option.
    """
    out = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, dict):
            out.append(shlex.quote(f"{flag}=" + ",".join(f"{k}={v}" for k, v in value.items())))
        elif isinstance(value, (list, tuple)):
            out.append(shlex.quote(f"{flag}=" + ",".join(str(v) for v in value)))
        else:
            out.append(shlex.quote(f"{flag}={value}"))
    return " ".join(out)

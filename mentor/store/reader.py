"""Store: read a store's index (pandas) and its clips (records, or a torch-ready stream).

Queries, audits and splits read the Parquet index, never the tars. `dataset()` opens only
the shards that hold clips matching a filter and decodes them for training. A store may
be a folder or a URL on object storage (s3://bucket/store; mentor/store/fs.py).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mentor.record import ClipRecord, SchemaVersionError, check_version
from mentor.rejections import rejection_columns
from mentor.store import decode
from mentor.store.fs import StoreFS
from mentor.store.layout import StoreError, committed_parts, index_problems, require_store, table_rel


class Store:
    """A finished (or partly finished) store, read-only except for index columns.

    `root`: a folder or a URL (s3://bucket/store...); `storage_options` for fsspec, else
    $MENTOR_STORAGE_OPTIONS, else the usual AWS_* variables. `root` is a Path for a
    folder, else a StoreURL (a str that joins with `/`)."""

    def __init__(self, root: str | os.PathLike[str], storage_options: dict | None = None):
        self.fs = StoreFS(root, storage_options)
        self.root = self.fs.root
        self.meta = require_store(self.fs)
        try:  # older stores are read as they are (records migrate on read); newer ones refused
            check_version(self.meta.get("schema_version", "1.0"), f"store {self.root}")
        except SchemaVersionError as e:
            raise StoreError(str(e)) from None

    def parts(self) -> dict[int, dict]:
        return committed_parts(self.fs)

    def _read_table(self, table: str) -> pd.DataFrame:
        frames = []
        present = set(self.fs.listdir(f"index/{table}"))  # one listing, not a look-up per part
        wanted = {n: rel for n in self.parts() if (rel := table_rel(table, n)).rsplit("/", 1)[-1] in present}
        fetched = {} if self.fs.local else self.fs.read_many(list(wanted.values()))  # concurrent GETs
        for n, rel in wanted.items():
            p = self.fs.path(rel)
            try:
                if self.fs.local:
                    df = self.fs.read_table(rel).to_pandas()
                elif isinstance(fetched[rel], Exception):
                    raise fetched[rel]
                else:
                    df = pq.read_table(pa.BufferReader(fetched[rel])).to_pandas()
            except (OSError, pa.ArrowException) as e:
                raise StoreError(f"{p}: not a readable Parquet index table ({str(e)[:160]}); "
                                 "run `mentor verify`") from None
            bad = index_problems(df, table, str(p))  # a tampered index never names files outside
            if bad:
                raise StoreError(f"{bad[0]}; run `mentor verify`")
            df["part"] = n
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["clip_id", "source_id", "duration", "identity", "split", "part"])
        df = pd.concat(frames, ignore_index=True, sort=False)
        # parts written before rejection codes (schema 1.0) get reject_stage/reject_code from their text
        return rejection_columns(df) if table == "rejected" else df

    def clips(self, where: str | None = None) -> pd.DataFrame:
        """Kept clips, one row each. `where` is a pandas query over the index columns, e.g.
        "duration >= 3 and split == 'train'" (backquote dotted names: `score.vad.speech_fraction` > .5)."""
        df = self._read_table("clips")
        if where:
            try:
                df = df.query(where, engine="python")
            except Exception as e:
                cols = ", ".join(sorted(df.columns)[:40])
                raise ValueError(f"bad filter {where!r}: {e}. Columns include: {cols}") from None
        return df

    def rejected(self) -> pd.DataFrame:
        return self._read_table("rejected")

    def sources(self) -> pd.DataFrame:
        """Finished sources; a source retried over runs keeps its latest row."""
        df = self._read_table("sources")
        if len(df):
            df = df.sort_values(["part", "time"]).drop_duplicates("source_id", keep="last")
        return df

    def shard_urls(self, where: str | None = None) -> list[str]:
        df = self.clips(where)
        return [str(self.root / s) for s in sorted(df["shard"].unique())] if len(df) else []

    # -- records --------------------------------------------------------------------
    def records(self, clip_ids: Iterable[str] | None = None, media_dir: str | os.PathLike[str] | None = None) -> Iterator[ClipRecord]:
        """Kept clips' records with arrays, read from the shards in shard order.

        With `media_dir`, each clip's video/audio members are written there and set in
        `record.files` ("video", "audio"), so annotators can run on them again.
        """
        df = self.clips()
        if clip_ids is not None:
            wanted = set(clip_ids)
            df = df[df["clip_id"].isin(wanted)]
        for shard, group in df.groupby("shard", sort=True):
            keys = set(group["key"])
            for key, members in _iter_tar(self.fs, shard, keys):
                rec = ClipRecord.from_json(members["json"], members.get("npz"))
                row = group.loc[group["key"] == key].iloc[0]
                rec.split, rec.identity = _value(row.get("split")), _value(row.get("identity"))
                if media_dir is not None:
                    out = Path(media_dir)
                    out.mkdir(parents=True, exist_ok=True)
                    for ext, data in members.items():
                        kind = {"mp4": "video", "flac": "audio", "wav": "audio"}.get(ext)
                        if kind:
                            p = out / f"{key}.{ext}"
                            p.write_bytes(data)
                            rec.files[kind] = str(p)
                yield rec

    def set_columns(self, df: pd.DataFrame) -> None:
        """Set or overwrite index columns (split, identity, attr.*) by clip_id; shards untouched."""
        if "clip_id" not in df.columns:
            raise ValueError("set_columns needs a 'clip_id' column")
        updates = df.set_index("clip_id")
        present = set(self.fs.listdir("index/clips"))
        for n in self.parts():
            rel = table_rel("clips", n)
            if rel.rsplit("/", 1)[-1] not in present:
                continue
            part = self.fs.read_table(rel).to_pandas()
            hit = part["clip_id"].isin(updates.index)
            if not hit.any():
                continue
            for col in updates.columns:
                if col not in part.columns:
                    part[col] = None
                part.loc[hit, col] = updates.loc[part.loc[hit, "clip_id"], col].to_numpy()
            buf = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), buf)
            self.fs.write_bytes(rel, buf.getvalue().to_pybytes())

    # -- training stream ----------------------------------------------------------------
    def dataset(self, where: str | None = None, shuffle: int = 0, decode_video: bool = True,
                seed: int = 0, resampled: bool = False):
        """A webdataset pipeline (a torch IterableDataset) over the matching clips.

        Yields dicts: "__key__", "video" (uint8 tensor TxHxWx3), "audio" (float32 tensor),
        "record" (ClipRecord, split and identity as the index has them), "arrays" (name ->
        FrameArray: numpy sees its data, .fps and .start say when its rows are), "txt" when
        present. Only the shards holding matching clips are opened. For training on
        windows of frames use mentor.store.windows.WindowDataset.
        """
        import webdataset as wds

        df = self.clips(where)
        if not len(df):
            raise StoreError(f"{self.root}: no clips match {where!r}")
        urls = [str(self.root / s) for s in sorted(df["shard"].unique())]
        keys = set(df["key"])
        index = {r.key: {"split": _value(r.split), "identity": _value(r.identity)} for r in df.itertuples()}
        ds = wds.WebDataset(urls, shardshuffle=len(urls) if shuffle else False, seed=seed,
                            resampled=resampled, empty_check=False, nodesplitter=wds.split_by_node,
                            workersplitter=wds.split_by_worker)
        if not self.fs.local:
            _open_through(ds, self.fs)
        ds = ds.select(lambda s: s["__key__"] in keys)
        if shuffle:
            ds = ds.shuffle(shuffle, seed=seed)  # the same order for the same seed
        return ds.map(lambda s: decode.sample(s, decode_video=decode_video, index=index))


def _value(v):
    """An index cell as a Python value: NaN / NA (pandas' empty cell) -> None."""
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v


def _open_through(ds, fs: StoreFS) -> None:
    """Make a webdataset pipeline open its shard URLs through the store's filesystem (its
    own opener knows only local paths, pipe: and http). The stage that opens URLs is
    swapped in place, so shuffling and node/worker splitting stay webdataset's."""
    import webdataset as wds

    for i, stage in enumerate(ds.pipeline):
        if isinstance(stage, wds.cache.StreamingOpen):
            ds.pipeline[i] = _FsOpen(fs)
            return
    raise StoreError(f"{fs.root}: this webdataset version has no StreamingOpen stage to replace; "
                     "read the store with Store.records() or copy it to a local folder")


class _FsOpen:
    """A webdataset stage: {"url": ...} -> {"url": ..., "stream": file object}, through fsspec."""

    def __init__(self, fs: StoreFS):
        self.fs = fs

    def __call__(self, src):
        prefix = f"{self.fs.root}/"
        for sample in src:
            url = sample["url"]
            if not url.startswith(prefix):
                raise StoreError(f"{url}: not a shard of {self.fs.root}")
            yield dict(sample, stream=self.fs.open(url[len(prefix):]))


def _iter_tar(fs: StoreFS, shard: str, keys: set[str]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for the wanted keys, members grouped as WebDataset does."""
    path = fs.path(shard)
    f = None
    try:
        f = fs.open(shard)
        tf = tarfile.open(fileobj=f)
    except (OSError, tarfile.TarError) as e:
        if f is not None:
            f.close()
        raise StoreError(f"{path}: cannot open shard ({e}); run `mentor verify`") from None
    with f, tf:
        current, members = None, {}
        for m in tf:
            if not m.isfile():
                continue
            key, _, ext = m.name.partition(".")
            if key != current:
                if current in keys:
                    yield current, members
                current, members = key, {}
            if key in keys:
                members[ext] = tf.extractfile(m).read()
        if current in keys:
            yield current, members

"""What a build did: sources ok/failed, clips kept/rejected by reason, hours in and out,
seconds per stage (wall and CPU), and every stage status that was not "done" (e.g. ASR skipped)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from mentor.record import ClipRecord, Rejection, SourceRecord
from mentor.rejections import group_rejections, render_rejections


@dataclass
class BuildSummary:
    store: str
    ray: str = ""
    sources_ok: int = 0
    sources_failed: list[dict] = field(default_factory=list)
    sources_skipped: int = 0  # finished in an earlier run
    clips_kept: int = 0
    rejections: list[Rejection] = field(default_factory=list, repr=False)  # every rejected clip's
    seconds_in: float = 0.0  # source video seen
    seconds_out: float = 0.0  # kept clips
    stage_seconds: Counter = field(default_factory=Counter)  # summed over clips (worker wall time)
    # CPU seconds per stage summed over clips: every thread of the worker process and its
    # ffmpeg children, split evenly where a process ran calls at once (pipelines.cpu)
    stage_cpu_seconds: Counter = field(default_factory=Counter)
    stage_clips: Counter = field(default_factory=Counter)  # clips each stage ran on (rejected ones skip most)
    statuses: Counter = field(default_factory=Counter)  # "stage: status" for non-"done" ones
    wall_seconds: float = 0.0
    first_clip_seconds: float | None = None  # from start until the first clip was written (warm-up)
    clip_seconds: list[float] = field(default_factory=list, repr=False)  # when each clip was written
    notes: list[str] = field(default_factory=list)
    log_file: str = ""  # the libraries' own messages during the build (pipelines.progress.quiet_console)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_source(self, src: SourceRecord, status: str) -> None:
        if status == "ok":
            self.sources_ok += 1
            self.seconds_in += float(src.probe.get("duration") or 0.0)
        else:
            self.sources_failed.append({"uri": src.uri, "error": src.error})

    def add_clip(self, rec: ClipRecord) -> None:
        if rec.kept:
            self.clips_kept += 1
            self.seconds_out += rec.duration
        else:
            self.rejections.append(rec.rejection_info)
        timing = rec.annotations.get("pipeline") or {}
        for stage, secs in timing.get("seconds", {}).items():
            self.stage_seconds[stage] += secs
            self.stage_clips[stage] += 1
        for stage, secs in timing.get("cpu_seconds", {}).items():
            self.stage_cpu_seconds[stage] += secs
        for stage, status in rec.status.items():
            if status != "done":
                self.statuses[f"{stage}: {status}"] += 1

    @property
    def clips_rejected(self) -> Counter:
        """"stage: code" -> clips (mentor.rejections.group_rejections, as `mentor info` and the audit)."""
        g = group_rejections(self.rejections)
        return Counter(dict(zip(g["reason"], (int(n) for n in g["clips"]))))

    def as_dict(self) -> dict:
        d = asdict(self)  # asdict rebuilds a Counter from (key, value) pairs: keys become tuples
        d["stage_seconds"] = {k: round(v, 4) for k, v in self.stage_seconds.items()}
        d["stage_cpu_seconds"] = {k: round(v, 4) for k, v in self.stage_cpu_seconds.items()}
        d["stage_clips"] = dict(self.stage_clips)
        d["statuses"] = dict(self.statuses)
        d.pop("clip_seconds")
        d.pop("rejections")
        d["clips_rejected"] = dict(self.clips_rejected)
        d["rejections"] = json.loads(group_rejections(self.rejections).to_json(orient="records"))
        d["hours_in"] = round(self.seconds_in / 3600, 4)
        d["hours_out"] = round(self.seconds_out / 3600, 4)
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, default=str)

    def render(self) -> str:
        lines = [f"store: {self.store}" + (f"  ({self.ray})" if self.ray else "")]
        lines.append(f"sources: {self.sources_ok} ok, {len(self.sources_failed)} failed"
                     + (f", {self.sources_skipped} already done" if self.sources_skipped else ""))
        for f in self.sources_failed:
            lines.append(f"  failed: {f['uri']}: {f['error']}")
        lines.append(f"clips: {self.clips_kept} kept, {len(self.rejections)} rejected")
        lines += render_rejections(group_rejections(self.rejections), indent="  rejected ")
        lines.append(f"video: {self.seconds_in / 3600:.4f} h in, {self.seconds_out / 3600:.4f} h kept")
        if self.stage_seconds:
            lines.append("worker seconds per stage: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(self.stage_seconds.items(), key=lambda kv: -kv[1])))
        if self.stage_cpu_seconds:
            lines.append("CPU seconds per stage: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(self.stage_cpu_seconds.items(), key=lambda kv: -kv[1])))
        for status, n in sorted(self.statuses.items()):
            lines.append(f"  {n:5d} clips  {status}")
        lines.append(f"wall time: {self.wall_seconds:.1f} s")
        if self.log_file:
            lines.append(f"library messages: {self.log_file}")
        lines += self.notes
        return "\n".join(lines)

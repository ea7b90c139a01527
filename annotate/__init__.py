"""Model-backed steps of curation, one per module: each runs a learned model (a detector,
a landmarker, a VAD, a fitter, a classifier) on one clip record, whether it filters
(person_filter) or annotates (landmarks, smplx_fit, av_sync, vad, diarize, asr,
audio_features, attributes, identity).

Each is a plain class: `name` (the record's stage name; it owns `scores["<name>.*"]`,
`arrays["<name>.*"]`, `annotations["<name>"]`), `reads` / `writes` (mentor.contracts
fields, with the names as constants of the module that writes them), `__init__(section)`
that loads its models once, and `__call__(record) -> record` that never raises on a bad
clip (record.fail / record.reject). No Ray, no shards: registry.py is the ordered list of
every clip step, and pipelines/ runs it. Steps that run no model (probe, shots, encode,
the sync shift) live in mentor/curate.
"""

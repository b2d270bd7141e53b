"""`synthetic://`, the embedded default lake: a deterministic market simulator (`market`, `kernel`,
`day`), real-world faults injected at chosen rates (`faults`), and the lake adapter (`lake`)."""

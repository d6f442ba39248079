"""The analysis stage: reads a study export (and metrics.json), writes analysis.json, analysis.md and charts.

It sits between the study app (which only collects and exports) and the report (which only reads
analysis.json). Its commands hang under `altcap study` (analyze, simulate, power) because that is
where users look for them; `altcap.cli` attaches them.
"""

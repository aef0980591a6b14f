"""The report stage: a comparison's tables, sentences and plots, computed only from the raw
files its run wrote (setup.json, cells.jsonl, requests.jsonl, db.csv), so that a report can be
regenerated, or its definitions changed, without the lab.

raw reads the files; results computes every number (statistics per cell) and findings the
sentences stating what the numbers show; tables lays out the main table for report.md and the
command line; markdown writes report.md; plots draws the PNG charts and sitemap the map of
the sites; writer puts them all in the run's directory. Nothing here prints: the command line
shows the main table and the findings.
"""

"""Dump a Flowise database.sqlite as SQL (Python's sqlite3 iterdump, no sqlite3 CLI needed).

Usage (by hand, not in CI): python3 tests/flowise/dump_sqlite.py DATABASE.sqlite > tests/fixtures/flowise/sqlite.sql
"""
import sqlite3
import sys

con = sqlite3.connect(sys.argv[1])
for line in con.iterdump():
    sys.stdout.write(line + "\n")

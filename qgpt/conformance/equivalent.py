"""The firmware mutants no reachable input tells apart from the original (equivalent
mutants), each with a one-line argument why. qgpt/conformance/mutants.py reads it;
a survivor not listed here is a gap in the golden cases.

A key names the mutant without its line number, so that it survives edits and
moved code: (function, the source line stripped, the token, its replacement, which
occurrence of the token in the line, 0-based).
"""

EQUIVALENT = {
}

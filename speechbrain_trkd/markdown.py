"""Markdown tables of the demo's and the benchmark's reports.

Authors
 * speechbrain-trkd developers 2026
"""


def markdown_table(rows):
    """Formats rows of equal keys as a markdown table.

    Arguments
    ---------
    rows : list of dict

    Returns
    -------
    str

    Example
    -------
    >>> print(markdown_table([{"a": "1", "b": "x"}]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(row[k] for k in keys) + " |" for row in rows]
    return "\n".join(lines)

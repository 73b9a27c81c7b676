"""Reads Parquetry objects with pyarrow, an independent Parquet reader, and prints a summary
as JSON: rows, columns, the stream catalog key and the first line.

Usage: python read_parquet.py <file.parquet>...
"""
import json
import sys

import pyarrow.parquet as pq

out = []
for path in sys.argv[1:]:
    f = pq.ParquetFile(path)
    table = f.read()
    meta = f.metadata.metadata or {}
    out.append({
        "rows": table.num_rows,
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "has_catalog": b"parquetry.streams" in meta,
        "lines": table.column("line").to_pylist(),
        "labels": sorted(set(table.column("labels").to_pylist())),
        "compression": f.metadata.row_group(0).column(3).compression,
    })
print(json.dumps(out))

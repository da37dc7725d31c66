# Compiled with its .py (mirrorwatch.COMPILED): every HTTP flow makes an HttpStats, a C struct of
# counters (read by name, as before) that the parser adds to as C numbers; HttpConfig stays a
# Python class.
from mirrorwatch.core.applayer.common cimport ParserStats

cdef class HttpStats(ParserStats):
    cdef public long long ignored_lines, truncated_lines, header_errors, body_truncated
    cdef public long long decompress_errors, decompression_bombs, chunk_errors, unmatched_responses
    cdef public long long interim_responses, tunnels, tunnel_bytes, ignored_bytes, gap_resyncs
    cdef public long long directions_failed, max_tx_hits

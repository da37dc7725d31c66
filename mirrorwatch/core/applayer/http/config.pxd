# Compiled with its .py (mirrorwatch.COMPILED): every HTTP flow makes an HttpStats, a C struct of
# counters (read by name, as before) that the parser adds to as C numbers; HttpConfig's limits
# are C fields the parser reads in C.
from mirrorwatch.core.applayer.common cimport ParserStats

cdef class HttpConfig:
    cdef public long long request_body_limit, response_body_limit, compression_bomb_limit
    cdef public long long decompress_layer_limit, max_tx, field_limit, flow_memcap
    cdef public long long header_repetitions, max_headers
    cdef public tuple file_hashes

cdef class HttpStats(ParserStats):
    cdef public long long ignored_lines, truncated_lines, header_errors, body_truncated
    cdef public long long decompress_errors, decompression_bombs, chunk_errors, unmatched_responses
    cdef public long long interim_responses, tunnels, tunnel_bytes, ignored_bytes, gap_resyncs
    cdef public long long directions_failed, max_tx_hits

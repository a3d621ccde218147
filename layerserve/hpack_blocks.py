"""Header blocks read by the gRPC load generator (RFC 7541), at little cost for the
blocks a server sends again and again (``layerserve.h2_loadgen``)."""

from __future__ import annotations

from typing import Any

import hpack

# Distinct header blocks a connection keeps decoded (servers send a few again and again).
KEPT_BLOCKS = 64


class HeaderBlocks:
    """An HPACK decoder (RFC 7541) that costs little for the blocks servers send again and
    again. A block seen before is answered from what it decoded to, for as long as the
    decoder's table stands (a change forgets every kept block: its indices no longer name
    the same fields). A block new but plain (no field added to the table, no Huffman code:
    what layerserve's server sends, whose trailers carry a new request id every time) is
    read field by field here. Any other block is hpack's to decode."""

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.kept: dict[bytes, dict[bytes, bytes]] = {}

    def decode(self, block: bytes) -> dict[bytes, bytes]:
        headers = self.kept.get(block)
        if headers is not None:
            return headers
        table = self.decoder.header_table
        plain = _plain_fields(block, table)
        if plain is not None:
            headers = plain
        else:
            before = (table.maxsize, tuple(table.dynamic_entries))
            headers = dict(self.decoder.decode(block, raw=True))
            if (table.maxsize, tuple(table.dynamic_entries)) != before:
                self.kept.clear()
                return headers
        if len(self.kept) >= KEPT_BLOCKS:
            self.kept.clear()
        self.kept[block] = headers
        return headers


def _plain_fields(block: bytes, table: Any) -> dict[bytes, bytes] | None:
    """The fields of a block made only of indexed fields and literals not indexed, with no
    Huffman-coded string; None for any other block."""
    fields = {}
    at, end = 0, len(block)
    while at < end:
        first = block[at]
        if first & 0x80:  # an indexed field
            index, at = _integer(block, at, 7)
            name, value = table.get_by_index(index)
        elif first & 0xE0:  # a field added to the table, or the table's size changed
            return None
        else:  # a literal without indexing (0000) or never indexed (0001)
            index, at = _integer(block, at, 4)
            if index:
                name = table.get_by_index(index)[0]
            else:
                name, at = _string(block, at)
                if name is None:
                    return None
            value, at = _string(block, at)
            if value is None:
                return None
        fields[name] = value
    return fields


def _integer(block: bytes, at: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer (RFC 7541 section 5.1) at ``at``, and where it ends."""
    mask = (1 << prefix_bits) - 1
    value = block[at] & mask
    at += 1
    if value < mask:
        return value, at
    shift = 0
    while True:
        byte = block[at]
        at += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(block: bytes, at: int) -> tuple[bytes | None, int]:
    """An HPACK string literal at ``at`` and where it ends; None for a Huffman-coded one."""
    if block[at] & 0x80:
        return None, at
    length, at = _integer(block, at, 7)
    if at + length > len(block):
        raise hpack.HPACKDecodingError("a header block ends inside a string")
    return block[at : at + length], at + length

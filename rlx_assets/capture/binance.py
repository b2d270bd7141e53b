"""Binance's markets as the capture sees them: endpoints, paths, stream names, symbols, the
update-id continuity rule of each diff-depth stream."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

TRADE_STREAM, DEPTH_STREAM, BOOK_TICKER_STREAM = "trade", "depth@100ms", "bookTicker"
STREAMS = (TRADE_STREAM, DEPTH_STREAM, BOOK_TICKER_STREAM)


@dataclass(frozen=True)
class Market:
    name: str
    ws_url: str  # default base URL of the WebSocket streams
    rest_url: str  # default base URL of the REST API
    depth_path: str  # the REST order book snapshot
    depth_limit: int  # the deepest snapshot the endpoint serves
    # Futures depth messages carry `pu` (the previous message's `u`): continuity is
    # `pu == previous u`. Spot has no `pu`: continuity is `U == previous u + 1`.
    continuity_by_pu: bool
    # Spot trade ids are consecutive per symbol, so a jump is a known loss. Futures trade ids
    # are not relied on (the trade stream also carries insurance-fund and ADL fills).
    trade_ids_consecutive: bool

    def exchange_symbol(self, symbol: str) -> str:
        """Binance's symbol for a platform symbol: BTC-USDT -> BTCUSDT (spot, usdm);
        BTC-USDT-PERP -> BTCUSDT (usdm); BTC-USD-PERP -> BTCUSD_PERP, BTC-USD-250926 ->
        BTCUSD_250926 (coinm)."""
        parts = symbol.upper().split("-")
        if not all(parts) or not 2 <= len(parts) <= 3:
            raise ValueError(f"symbol {symbol!r}: expected BASE-QUOTE[-PERP|-YYMMDD]")
        pair = parts[0] + parts[1]
        contract = parts[2] if len(parts) == 3 else None
        if self.name == "spot":
            if contract is not None:
                raise ValueError(f"symbol {symbol!r}: a spot symbol is BASE-QUOTE")
            return pair
        if self.name == "usdm":
            if contract in (None, "PERP"):
                return pair
            return f"{pair}_{contract}"
        if contract is None:
            raise ValueError(f"symbol {symbol!r}: a coinm symbol is BASE-QUOTE-PERP or -YYMMDD")
        return f"{pair}_{contract}"

    def stream_names(self, exchange_symbol: str) -> list[str]:
        lower = exchange_symbol.lower()
        return [f"{lower}@{stream}" for stream in STREAMS]

    def stream_url(self, base_url: str, exchange_symbols: list[str]) -> str:
        names = [name for symbol in exchange_symbols for name in self.stream_names(symbol)]
        return f"{base_url.rstrip('/')}/stream?streams={'/'.join(names)}"

    def depth_url(self, base_url: str, exchange_symbol: str, limit: int | None = None) -> str:
        query = urlencode({"symbol": exchange_symbol, "limit": limit or self.depth_limit})
        return f"{base_url.rstrip('/')}{self.depth_path}?{query}"


MARKETS = {
    market.name: market
    for market in (
        Market(
            name="spot",
            ws_url="wss://stream.binance.com:9443",
            rest_url="https://api.binance.com",
            depth_path="/api/v3/depth",
            depth_limit=5000,
            continuity_by_pu=False,
            trade_ids_consecutive=True,
        ),
        Market(
            name="usdm",
            ws_url="wss://fstream.binance.com",
            rest_url="https://fapi.binance.com",
            depth_path="/fapi/v1/depth",
            depth_limit=1000,
            continuity_by_pu=True,
            trade_ids_consecutive=False,
        ),
        Market(
            name="coinm",
            ws_url="wss://dstream.binance.com",
            rest_url="https://dapi.binance.com",
            depth_path="/dapi/v1/depth",
            depth_limit=1000,
            continuity_by_pu=True,
            trade_ids_consecutive=False,
        ),
    )
}

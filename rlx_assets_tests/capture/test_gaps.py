"""Gap bookkeeping per symbol, with exact windows; Binance's symbols and URLs per market."""

from __future__ import annotations

import pytest

from rlx_assets.capture.binance import MARKETS
from rlx_assets.capture.gaps import DEPTH_IDS, DISCONNECT, TRADE_IDS, Gap, SymbolGaps

MS = 1_000_000


def depth(first: int, last: int, event_ms: int, previous: int | None = None) -> dict:
    data = {"E": event_ms, "U": first, "u": last, "b": [], "a": []}
    if previous is not None:
        data["pu"] = previous
    return data


def ticker(update_id: int) -> dict:
    return {"u": update_id}


def trade(trade_id: int, time_ms: int) -> dict:
    return {"t": trade_id, "T": time_ms}


def test_a_continuous_spot_feed_has_no_gap() -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    assert gaps.observe("depth", depth(1, 10, 1000)) == []
    assert gaps.observe("bookTicker", ticker(10)) == []
    assert gaps.observe("depth", depth(11, 20, 1100)) == []
    assert gaps.observe("trade", trade(5, 1050)) == []
    assert gaps.observe("trade", trade(6, 1060)) == []


@pytest.mark.parametrize(
    ("first", "window"),
    [(25, (21, 24)), (15, (15, 20))],  # updates skipped; updates sent again
    ids=["skipped", "overlap"],
)
def test_a_spot_depth_message_must_start_at_the_previous_u_plus_one(first, window) -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    gaps.observe("depth", depth(1, 20, 1000))
    (gap,) = gaps.observe("depth", depth(first, 30, 1100))
    assert (gap.reason, gap.from_update_id, gap.to_update_id) == (DEPTH_IDS, *window)
    assert (gap.from_time_ns, gap.to_time_ns) == (1000 * MS, 1100 * MS)


def test_a_futures_depth_message_must_name_the_previous_u_as_pu() -> None:
    gaps = SymbolGaps(MARKETS["usdm"])
    gaps.observe("depth", depth(1, 20, 1000, previous=0))
    # Futures ids are not contiguous: U may jump as long as pu links the messages.
    assert gaps.observe("depth", depth(40, 50, 1100, previous=20)) == []
    (gap,) = gaps.observe("depth", depth(90, 99, 1200, previous=70))
    assert (gap.from_update_id, gap.to_update_id) == (51, 89)
    assert gap.detail == {"previous_u": 50, "pu": 70}


def test_a_spot_trade_id_jump_is_a_time_gap_only() -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    gaps.observe("trade", trade(5, 1000))
    (gap,) = gaps.observe("trade", trade(9, 1200))
    assert gap == Gap(TRADE_IDS, 1000 * MS, 1200 * MS, None, None, gap.detail)
    # Futures trade ids are not relied on.
    futures = SymbolGaps(MARKETS["usdm"])
    futures.observe("trade", trade(5, 1000))
    assert futures.observe("trade", trade(9, 1200)) == []


def test_a_disconnect_spans_from_the_last_messages_to_the_first_of_every_stream() -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    gaps.observe("depth", depth(1, 100, 1000))
    gaps.observe("bookTicker", ticker(97))
    gaps.observe("trade", trade(5, 990))
    gaps.disconnected(capture_ns=7)
    gaps.reconnected(capture_ns=9)
    # Written only when the depth, ticker and trade streams have all delivered again.
    assert gaps.observe("bookTicker", ticker(160)) == []
    assert gaps.observe("depth", depth(150, 170, 1600)) == []
    (gap,) = gaps.observe("trade", trade(40, 1650))
    assert gap.reason == DISCONNECT
    assert (gap.from_update_id, gap.to_update_id) == (98, 170)  # min(97, 100)+1 .. max(170, 159)
    assert (gap.from_time_ns, gap.to_time_ns) == (990 * MS, 1650 * MS)
    assert gap.detail == {"disconnected_ns": 7, "reconnected_ns": 9, "disconnects": 1}
    # After the reconnect the streams are followed again; ids carry on from the new messages.
    assert gaps.observe("depth", depth(171, 180, 1700)) == []
    assert gaps.observe("trade", trade(41, 1700)) == []


def test_a_file_ending_inside_a_disconnect_gets_the_gap_up_to_its_own_end() -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    gaps.observe("depth", depth(1, 100, 1000))
    gaps.observe("trade", trade(5, 1010))
    gaps.disconnected(capture_ns=7)
    provisional = gaps.file_ends(capture_ns=8)
    assert (provisional.from_update_id, provisional.to_update_id) == (101, 101)
    assert (provisional.from_time_ns, provisional.to_time_ns) == (1000 * MS, 1010 * MS)
    assert provisional.detail["open_at_file_end"] is True
    gaps.reconnected(capture_ns=9)
    gaps.observe("depth", depth(150, 170, 1600))
    gaps.observe("bookTicker", ticker(171))
    (whole,) = gaps.observe("trade", trade(40, 1650))
    assert (whole.from_update_id, whole.to_update_id) == (101, 170)
    assert gaps.file_ends(capture_ns=10) is None


def test_nothing_captured_yet_means_no_gap() -> None:
    gaps = SymbolGaps(MARKETS["spot"])
    gaps.disconnected(capture_ns=1)
    gaps.reconnected(capture_ns=2)
    assert gaps.pending is None


@pytest.mark.parametrize(
    ("market", "symbol", "expected"),
    [
        ("spot", "BTC-USDT", "BTCUSDT"),
        ("usdm", "BTC-USDT", "BTCUSDT"),
        ("usdm", "BTC-USDT-PERP", "BTCUSDT"),
        ("usdm", "BTC-USDT-250926", "BTCUSDT_250926"),
        ("coinm", "BTC-USD-PERP", "BTCUSD_PERP"),
        ("coinm", "eth-usd-250926", "ETHUSD_250926"),
    ],
)
def test_platform_symbols_map_to_binance_symbols(market, symbol, expected) -> None:
    assert MARKETS[market].exchange_symbol(symbol) == expected


@pytest.mark.parametrize(
    ("market", "symbol"), [("spot", "BTCUSDT"), ("spot", "BTC-USDT-PERP"), ("coinm", "BTC-USD")]
)
def test_a_symbol_the_market_does_not_have_is_a_clear_error(market, symbol) -> None:
    with pytest.raises(ValueError, match=symbol):
        MARKETS[market].exchange_symbol(symbol)


def test_each_market_has_its_own_endpoints_and_paths() -> None:
    spot, usdm, coinm = MARKETS["spot"], MARKETS["usdm"], MARKETS["coinm"]
    assert spot.stream_url(spot.ws_url, ["BTCUSDT"]) == (
        "wss://stream.binance.com:9443/stream?streams="
        "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker"
    )
    assert spot.depth_url(spot.rest_url, "BTCUSDT") == (
        "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000"
    )
    assert usdm.stream_url(usdm.ws_url, ["BTCUSDT"]).startswith("wss://fstream.binance.com/stream")
    assert usdm.depth_url("http://mirror/", "BTCUSDT", 100) == (
        "http://mirror/fapi/v1/depth?symbol=BTCUSDT&limit=100"
    )
    assert coinm.depth_url(coinm.rest_url, "BTCUSD_PERP").startswith(
        "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP"
    )

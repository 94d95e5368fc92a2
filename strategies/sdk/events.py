"""Events the engine delivers to a strategy's handlers. Prices are floats (indicator maths);
quantities in order updates are Decimal (exact)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from strategies.sdk.enums import AssetType, BarFrequency, OrderState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_SECOND = 1_000_000_000


class _BarFields(NamedTuple):
    symbol: str
    asset_type: AssetType
    frequency: BarFrequency
    time_ns: int  # bar open time, nanoseconds since the epoch, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarEvent(_BarFields):
    """One bar, delivered at its close (`ctx.now`); `time` is the bar's open time, UTC.

    Events are named tuples rather than dataclasses: the engine makes one per bar, and a tuple
    is built several times faster than a frozen dataclass while staying just as immutable. The
    tuple holds the open time as `time_ns` (int nanoseconds since the epoch, UTC) and `time`
    makes the datetime when it is read: most strategies never read it, and a datetime per bar
    was a tenth of a long replay. Unpacking or indexing an event gives `time_ns` in fourth place.

    `BarEvent(symbol, asset_type, frequency, time, open, high, low, close, volume)` takes `time`
    as a datetime (a naive one is taken as UTC).
    """

    __slots__ = ()

    def __new__(
        cls, symbol: str, asset_type: AssetType, frequency: BarFrequency, time: datetime,
        open: float, high: float, low: float, close: float, volume: float,
    ):
        return tuple.__new__(cls, (symbol, asset_type, frequency, _nanoseconds(time), open, high, low, close, volume))

    @property
    def time(self) -> datetime:
        """The bar's open time, UTC."""
        seconds, rest = divmod(self.time_ns, _NS_PER_SECOND)
        moment = datetime.fromtimestamp(seconds, UTC)
        return moment.replace(microsecond=rest // 1000) if rest else moment

    def _asdict(self) -> dict:
        """The constructor's arguments by name, `time` as a datetime (so BarEvent(**event._asdict())
        is the same event)."""
        return dict(zip(_CONSTRUCTOR_FIELDS, self._constructor_arguments(), strict=True))

    def _replace(self, **changes) -> "BarEvent":
        """A copy with some fields changed; `time` takes a datetime, `time_ns` nanoseconds."""
        if "time" in changes:
            changes["time_ns"] = _nanoseconds(changes.pop("time"))
        return _BarFields._replace(self, **changes)

    def _constructor_arguments(self) -> tuple:
        return (*self[:3], self.time, *self[4:])

    def __getnewargs__(self):  # copy and pickle rebuild the event through __new__, which takes `time`
        return self._constructor_arguments()

    def __repr__(self) -> str:
        return f"BarEvent({', '.join(f'{name}={value!r}' for name, value in self._asdict().items())})"


_CONSTRUCTOR_FIELDS = tuple("time" if name == "time_ns" else name for name in _BarFields._fields)


def _nanoseconds(moment: datetime) -> int:
    if not isinstance(moment, datetime):
        raise TypeError(f"time must be a datetime (the bar's open time, UTC), not {type(moment).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_SECOND + delta.microseconds * 1000


class OrderUpdateEvent(NamedTuple):
    """An order changed state or filled. `filled_quantity` and `average_fill_price` are the
    totals so far; `last_fill_*` describe the fill that caused this update (None otherwise);
    `reason` says why an order was rejected, cancelled or expired; `time` is when it happened."""

    order_id: int
    tag: str | None
    symbol: str
    state: OrderState
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    last_fill_quantity: Decimal | None
    last_fill_price: Decimal | None
    reason: str | None
    time: datetime | None = None


class TimerEvent(NamedTuple):
    name: str
    time: datetime

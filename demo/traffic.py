"""Shoppers for the demo: each fills a cart through the API, looks at it, maybe changes it, checks out.

Cards follow the payment gateway's test cards (``services``), so some orders are slow, some are
throttled or hit a gateway error once and are retried, and a few are declined for good and end
in the dead-letter queue.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .services import PRODUCTS

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
# Test cards by how often shoppers use them.
CARD_WEIGHTS = {"4242": 70, "4000-slow": 10, "4000-429": 8, "4000-503": 8, "4000-402": 4}


@dataclass(frozen=True)
class Shopper:
    """What one shopper does: the cart's lines, whether they change one, and the card they pay with."""

    customer: str
    lines: tuple[tuple[str, int], ...]
    card: str = "4242"
    change_quantity: bool = False


@dataclass
class Visit:
    """What happened: the API's answers and the order id checkout returned (None if it refused)."""

    shopper: Shopper
    statuses: list[int] = field(default_factory=list)
    order_id: Optional[str] = None


def random_shopper(rng: random.Random, n: int) -> Shopper:
    products = rng.sample(sorted(PRODUCTS), k=rng.randint(1, 3))
    cards, weights = zip(*CARD_WEIGHTS.items())
    return Shopper(
        customer=f"{rng.choice(NAMES)}-{n:03d}",
        lines=tuple((p, rng.randint(1, 3)) for p in products),
        card=rng.choices(cards, weights)[0],
        change_quantity=n == 1 or rng.random() < 0.4,  # the first shopper shows every route
    )


def _call(api: str, method: str, path: str, body: Optional[dict[str, Any]] = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def visit(api: str, shopper: Shopper) -> Visit:
    """One shopper's calls, in order: add each line, list the cart, maybe update, check out."""
    done = Visit(shopper)
    for product_id, quantity in shopper.lines:
        status, _ = _call(api, "POST", "/cart", {"customer_id": shopper.customer, "product_id": product_id,
                                                  "quantity": quantity})  # fmt: skip
        done.statuses.append(status)
    status, _ = _call(api, "GET", f"/cart/{shopper.customer}")
    done.statuses.append(status)
    if shopper.change_quantity:
        product_id, quantity = shopper.lines[0]
        status, _ = _call(api, "PUT", f"/cart/{shopper.customer}/{product_id}", {"quantity": quantity + 1})
        done.statuses.append(status)
    status, answer = _call(api, "POST", "/checkout", {"customer_id": shopper.customer, "card": shopper.card})
    done.statuses.append(status)
    if status == 202 and isinstance(answer, dict):
        done.order_id = str(answer["order_id"])
    return done


class Traffic(threading.Thread):
    """Shoppers arriving every ``interval_s`` seconds (several at once when ``concurrency`` > 1),
    ``count`` of them or until stopped; each finished visit is reported to ``on_visit``."""

    def __init__(
        self,
        api: str,
        count: Optional[int] = None,
        interval_s: float = 2.0,
        seed: Optional[int] = None,
        shoppers: Optional[list[Shopper]] = None,
        concurrency: int = 3,
        on_visit: Callable[[Visit], None] = lambda _: None,
    ) -> None:
        super().__init__(name="traffic", daemon=True)
        self.api = api
        self.count = len(shoppers) if shoppers is not None else count
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.planned = list(shoppers or [])
        self.on_visit = on_visit
        self.stop_event = threading.Event()
        self.slots = threading.Semaphore(max(1, concurrency))
        self.visits: list[Visit] = []
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []

    def _one(self, shopper: Shopper) -> None:
        try:
            done = visit(self.api, shopper)
            with self.lock:
                self.visits.append(done)
            self.on_visit(done)
        except Exception as exc:  # the API went away (stopping), or a bug worth showing
            if not self.stop_event.is_set():
                self.errors.append(f"{shopper.customer}: {type(exc).__name__}: {exc}")
        finally:
            self.slots.release()

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set() and (self.count is None or n < self.count):
            shopper = self.planned[n] if n < len(self.planned) else random_shopper(self.rng, n + 1)
            n += 1
            self.slots.acquire()
            if self.stop_event.is_set():
                self.slots.release()
                break
            thread = threading.Thread(target=self._one, args=(shopper,), name=f"shopper-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
            self.stop_event.wait(self.interval_s)
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        self.stop_event.set()

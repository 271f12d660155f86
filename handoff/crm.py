"""The CRM store: customers, accounts, orders, charges, cases, callbacks.

SQLite (WAL) through SQLAlchemy as the embedded default; a PostgreSQL URL serves a multi-node
deployment unchanged. The IVR looks callers up by calling number and by account or order number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from handoff.db import open_engine
from handoff.migrate import upgrade

DEMO_PHONE = "+15550000001"
DEMO_ACCOUNT = "90000001"
DEMO_ORDER = "456712"
ORDER_STATUSES = ("processing", "shipped", "out for delivery", "delivered", "delayed")
CARRIERS = ("UPS", "FedEx", "DHL", "USPS")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    tier: Mapped[str] = mapped_column(String(16), default="standard")
    language: Mapped[str] = mapped_column(String(8), default="en")
    accounts: Mapped[list[Account]] = relationship(back_populates="customer")
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    balance_cents: Mapped[int] = mapped_column(Integer, default=0)
    customer: Mapped[Customer] = relationship(back_populates="accounts")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(24))
    carrier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    placed_on: Mapped[date]
    eta: Mapped[date | None] = mapped_column(nullable=True)
    customer: Mapped[Customer] = relationship(back_populates="orders")


class Charge(Base):
    __tablename__ = "charges"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_cents: Mapped[int]
    description: Mapped[str] = mapped_column(String(120))
    charged_on: Mapped[date]


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    notes: Mapped[str] = mapped_column(String(4000), default="")
    created_at: Mapped[datetime]


class Callback(Base):
    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    phone: Mapped[str] = mapped_column(String(32))
    window: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class OrderInfo:
    number: str
    status: str
    carrier: str | None
    placed_on: date
    eta: date | None
    customer_name: str


@dataclass(frozen=True)
class ChargeInfo:
    account_number: str
    amount_cents: int
    description: str
    charged_on: date


@dataclass(frozen=True)
class CaseInfo:
    id: int
    customer_id: int | None
    subject: str
    status: str
    notes: str
    created_at: datetime


@dataclass(frozen=True)
class AccountInfo:
    number: str
    balance_cents: int


@dataclass(frozen=True)
class CustomerCard:
    """What an agent sees of a caller: identity and the records a call is usually about."""

    id: int
    name: str
    phone: str
    tier: str
    language: str
    accounts: list[AccountInfo]
    recent_orders: list[OrderInfo]
    recent_charges: list[ChargeInfo]
    open_cases: list[CaseInfo]


CASE_STATUSES = ("open", "pending", "closed")
_CASE_NOTES_MAX = 4000


class CrmStore:
    """A thin, typed facade over the tables; each call is one short transaction."""

    def __init__(self, url: str = "sqlite:///var/crm.sqlite") -> None:
        self.engine = open_engine(url)
        upgrade(self.engine, "crm")  # the schema at its newest (handoff.migrate)

    def customer_by_phone(self, phone: str) -> Customer | None:
        digits = "".join(c for c in phone if c.isdigit())[-10:]
        if not digits:
            return None
        with Session(self.engine, expire_on_commit=False) as s:
            return s.scalars(select(Customer).where(Customer.phone.like(f"%{digits}"))).first()

    def account_numbers(self, customer_id: int) -> list[str]:
        with Session(self.engine) as s:
            return list(s.scalars(select(Account.number).where(Account.customer_id == customer_id)))

    def order(self, number: str) -> OrderInfo | None:
        with Session(self.engine) as s:
            row = s.scalars(select(Order).where(Order.number == number)).first()
            if row is None:
                return None
            return OrderInfo(row.number, row.status, row.carrier, row.placed_on, row.eta,
                             row.customer.name)

    def account_balance(self, number: str) -> int | None:
        with Session(self.engine) as s:
            account = s.scalars(select(Account).where(Account.number == number)).first()
            return None if account is None else account.balance_cents

    def recent_charges(self, account_number: str, limit: int = 5) -> list[Charge]:
        with Session(self.engine, expire_on_commit=False) as s:
            account = s.scalars(select(Account).where(Account.number == account_number)).first()
            if account is None:
                return []
            return list(s.scalars(select(Charge).where(Charge.account_id == account.id)
                                  .order_by(Charge.charged_on.desc()).limit(limit)))

    def open_case(self, subject: str, customer_id: int | None = None, notes: str = "") -> int:
        with Session(self.engine) as s, s.begin():
            case = Case(customer_id=customer_id, subject=subject, notes=notes,
                        created_at=datetime.now(UTC))
            s.add(case)
            s.flush()
            return case.id

    def customer_card(self, customer_id: int, *, orders: int = 5, charges: int = 5
                      ) -> CustomerCard | None:
        """The customer's card in one read: newest orders and charges first, open cases."""
        with Session(self.engine) as s:
            customer = s.get(Customer, customer_id)
            if customer is None:
                return None
            accounts = list(s.scalars(select(Account).where(Account.customer_id == customer_id)
                                      .order_by(Account.number)))
            by_id = {a.id: a.number for a in accounts}
            order_rows = s.scalars(select(Order).where(Order.customer_id == customer_id)
                                   .order_by(Order.placed_on.desc(), Order.number).limit(orders))
            charge_rows = s.scalars(select(Charge).where(Charge.account_id.in_(by_id))
                                    .order_by(Charge.charged_on.desc(), Charge.id.desc())
                                    .limit(charges)) if by_id else []
            return CustomerCard(
                id=customer.id, name=customer.name, phone=customer.phone, tier=customer.tier,
                language=customer.language,
                accounts=[AccountInfo(a.number, a.balance_cents) for a in accounts],
                recent_orders=[OrderInfo(o.number, o.status, o.carrier, o.placed_on, o.eta,
                                         customer.name) for o in order_rows],
                recent_charges=[ChargeInfo(by_id[c.account_id], c.amount_cents, c.description,
                                           c.charged_on) for c in charge_rows],
                open_cases=self.cases(customer_id, status="open", session=s))

    def cases(self, customer_id: int, status: str | None = None, *,
              session: Session | None = None) -> list[CaseInfo]:
        """The customer's cases, newest first; ``status`` filters."""
        def read(s: Session) -> list[CaseInfo]:
            query = select(Case).where(Case.customer_id == customer_id)
            if status is not None:
                query = query.where(Case.status == status)
            return [_case_info(c) for c in s.scalars(query.order_by(Case.id.desc()))]
        if session is not None:
            return read(session)
        with Session(self.engine) as s:
            return read(s)

    def case(self, case_id: int) -> CaseInfo | None:
        with Session(self.engine) as s:
            row = s.get(Case, case_id)
            return None if row is None else _case_info(row)

    def update_case(self, case_id: int, *, add_note: str | None = None,
                    status: str | None = None) -> CaseInfo:
        """Append a note (oldest notes are dropped past the column's size) and/or set status."""
        if status is not None and status not in CASE_STATUSES:
            raise ValueError(f"case status must be one of {CASE_STATUSES}, not {status!r}")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = s.get(Case, case_id)
            if row is None:
                raise KeyError(f"no case {case_id}")
            if add_note:
                notes = f"{row.notes}\n{add_note}" if row.notes else add_note
                row.notes = notes[-_CASE_NOTES_MAX:]
            if status is not None:
                row.status = status
            s.flush()
            return _case_info(row)

    def schedule_callback(self, phone: str, window: str, customer_id: int | None = None) -> int:
        with Session(self.engine) as s, s.begin():
            callback = Callback(customer_id=customer_id, phone=phone, window=window,
                                created_at=datetime.now(UTC))
            s.add(callback)
            s.flush()
            return callback.id

    def count(self, table: type[Base]) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(table)) or 0


def _case_info(row: Case) -> CaseInfo:
    return CaseInfo(row.id, row.customer_id, row.subject, row.status, row.notes, row.created_at)


_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
          "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
          "Sarah", "Charles", "Karen", "Maria", "Ahmed", "Wei", "Priya", "Olga", "Diego", "Aisha",
          "Kenji", "Fatima", "Lars"]
_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
         "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
         "Moore", "Jackson", "Martin", "Lee", "Khan", "Chen", "Patel", "Novak", "Silva", "Okafor",
         "Tanaka", "Haddad", "Berg"]
_ITEMS = ("Monthly plan", "Headphones", "Router rental", "Late fee", "Phone case",
          "Streaming add-on", "Delivery charge", "Laptop stand", "Warranty extension", "Gift card")


def seed(store: CrmStore, customers: int = 3000, rng_seed: int = 20261122,
         today: date = date(2026, 11, 22)) -> None:
    """A realistic, deterministic demo data set (same seed, same rows)."""
    rng = random.Random(rng_seed)
    used: set[str] = {DEMO_ORDER}
    with Session(store.engine) as s, s.begin():
        if s.scalar(select(func.count()).select_from(Customer)):
            raise ValueError("the CRM already has customers; seed an empty database")
        # The demo caller of the fixture recordings: a known customer with a shipped order.
        demo = Customer(name="Alex Morgan", phone=DEMO_PHONE, tier="gold")
        s.add(demo)
        s.flush()
        s.add(Account(number=DEMO_ACCOUNT, customer_id=demo.id, balance_cents=4250))
        s.add(Order(number=DEMO_ORDER, customer_id=demo.id, status="shipped", carrier="UPS",
                    placed_on=today - timedelta(days=3), eta=today + timedelta(days=2)))
        s.flush()
        demo_account = s.scalars(select(Account).where(Account.number == DEMO_ACCOUNT)).one()
        # The double charge the demo's second caller calls about: the same item billed twice.
        for amount, item, days_ago in ((2999, "Monthly plan", 20), (5900, "Headphones", 9),
                                       (5900, "Headphones", 9)):
            s.add(Charge(account_id=demo_account.id, amount_cents=amount, description=item,
                         charged_on=today - timedelta(days=days_ago)))
        for i in range(customers):
            customer = Customer(name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                                phone=f"+1555{1000000 + i:07d}",
                                tier=rng.choices(("standard", "gold", "platinum"), (8, 3, 1))[0],
                                language=rng.choices(("en", "es", "fr"), (10, 2, 1))[0])
            s.add(customer)
            s.flush()
            account = Account(number=f"{10000000 + i * 7:08d}", customer_id=customer.id,
                              balance_cents=rng.randrange(0, 50000))
            s.add(account)
            s.flush()
            for _ in range(rng.randrange(1, 4)):
                status = rng.choice(ORDER_STATUSES)
                placed = today - timedelta(days=rng.randrange(1, 30))
                number = f"{rng.randrange(100000, 999999)}"
                while number in used:
                    number = f"{rng.randrange(100000, 999999)}"
                used.add(number)
                s.add(Order(number=number, customer_id=customer.id,
                            status=status,
                            carrier=None if status == "processing" else rng.choice(CARRIERS),
                            placed_on=placed,
                            eta=None if status == "delivered"
                            else today + timedelta(days=rng.randrange(1, 8))))
            for _ in range(rng.randrange(2, 6)):
                s.add(Charge(account_id=account.id, amount_cents=rng.randrange(199, 25000),
                             description=rng.choice(_ITEMS),
                             charged_on=today - timedelta(days=rng.randrange(0, 60))))
            if i % 500 == 0:
                s.flush()

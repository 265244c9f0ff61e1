"""Money arithmetic for the Filter response: row sums, VAT and invoice totals, in Decimal.

How the spec's numbers are reproduced:

* Row price = ``UnitPrice`` if present, else ``Amount`` (the order example's "Price for the row").
* ``Discount`` is a PERCENT. The UI screenshot shows "1 St 234,00  Rabatt -10,00 %  Summa 257,0",
  i.e. 1 x 234.00 x (1 - (-10)/100) = 257.40 (the UI truncates the display): a negative
  discount is a surcharge. The Filter example agrees with a positive one: 1 x 84.96 with 10 %
  -> SumAmount 76.46. So ``SumAmount = Quantity x price x (1 - Discount/100)``, to 2 decimals.
* ``VatRate`` is a percent, 25 when absent: ``VatAmount = SumAmount x VatRate/100`` to 2
  decimals, computed from the ROUNDED SumAmount (Filter example: 76.46 -> VAT 19.12).
* Invoice ``VATAmount`` = sum of row VAT. Invoice ``TotalAmount`` INCLUDES VAT and, for SEK, is
  rounded to whole kronor (öresavrundning): in the Filter example the rows sum to 502.06 + VAT
  125.52 = 627.58 and TotalAmount is 628.00; the UI lists agree ("Totalt belopp 69 242,00",
  "Belopp inkl. moms 86 553,00" = 86 552,50 rounded), and the Filter UI mapping says
  "Belopp inkl. moms <-> TotalAmount".
* Rounding is half-up (commercial rounding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
KRONA = Decimal("1")
DEFAULT_VAT_RATE = Decimal(25)


def dec(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    """A JSON number as Decimal via its shortest repr (11.9 -> Decimal('11.9')); None -> default."""
    return default if value is None else Decimal(str(value))


@dataclass(frozen=True)
class RowAmounts:
    quantity: Decimal
    unit_price: Decimal
    sum_amount: Decimal
    vat_amount: Decimal


def row_amounts(row: Mapping[str, Any]) -> RowAmounts:
    """Amounts of one (validated) row; text rows have no quantity/price and sum to 0."""
    quantity = dec(row.get("Quantity"))
    price = dec(row["UnitPrice"] if row.get("UnitPrice") is not None else row.get("Amount"))
    discount = dec(row.get("Discount"))
    vat_rate = dec(row.get("VatRate"), DEFAULT_VAT_RATE)
    sum_amount = (quantity * price * (1 - discount / 100)).quantize(CENT, ROUND_HALF_UP)
    vat_amount = (sum_amount * vat_rate / 100).quantize(CENT, ROUND_HALF_UP)
    return RowAmounts(quantity, price, sum_amount, vat_amount)


def invoice_totals(rows: Iterable[RowAmounts], currency: str) -> tuple[Decimal, Decimal]:
    """(TotalAmount incl. VAT, VATAmount) of an invoice."""
    rows = list(rows)
    vat = sum((r.vat_amount for r in rows), Decimal(0))
    total = sum((r.sum_amount for r in rows), Decimal(0)) + vat
    total = total.quantize(KRONA if currency == "SEK" else CENT, ROUND_HALF_UP).quantize(CENT)
    return total, vat

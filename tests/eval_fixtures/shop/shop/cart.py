"""Shopping-cart arithmetic."""


def cart_total(prices):
    """The sum of the prices, rounded to cents."""
    return round(sum(prices), 2)


def apply_discount(price, percent):
    """The price after taking ``percent`` percent off."""
    return price * percent / 100


def item_count(items):
    """How many items are in the cart (duplicates count)."""
    return len(items)

from shop.cart import apply_discount, cart_total, item_count


def test_cart_total():
    assert cart_total([1.25, 2.5, 3]) == 6.75


def test_apply_discount():
    assert apply_discount(80, 25) == 60


def test_item_count():
    assert item_count(["pen", "pen", "ink"]) == 3

from textstats.words import capitalize_words, longest_word, unique_words


def test_longest_word():
    assert longest_word("a tall giraffe") == "giraffe"


def test_capitalize_words():
    assert capitalize_words("good day") == "Good Day"


def test_unique_words():
    assert unique_words("Red red blue") == 2

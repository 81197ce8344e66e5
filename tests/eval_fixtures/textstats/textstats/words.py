"""Word statistics."""


def longest_word(text):
    """The longest word (the first one on ties)."""
    best = ""
    for word in text.split():
        if len(word) > len(best):
            best = word
    return best


def capitalize_words(text):
    """Every word with its first letter in upper case."""
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def unique_words(text):
    """How many different words the text has (case-insensitive)."""
    return len({word.lower() for word in text.split()})

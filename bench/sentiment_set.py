"""Labelled call-center turns for comparing sentiment scorers (bench/bench_sentiment.py).

(text, label, angry): label is negative | neutral | positive as a support lead would
mark the turn; angry marks a caller who needs an apology before anything else.
"""

TURNS: list[tuple[str, str, bool]] = [
    ("I'd like to check the status of my order", "neutral", False),
    ("Hi, I'm calling about order seven eight nine oh one.", "neutral", False),
    ("Can you change the shipping address on my order?", "neutral", False),
    ("My order number is 78901.", "neutral", False),
    ("I want to return the headphones, they don't fit.", "neutral", False),
    ("When will my package be delivered?", "neutral", False),
    ("Do gift cards expire?", "neutral", False),
    ("I moved last month.", "neutral", False),
    ("I need to cancel my subscription, please.", "neutral", False),
    ("It was delivered on Monday.", "neutral", False),
    ("Thank you so much, that's really helpful!", "positive", False),
    ("Great, that sorted it, thanks a lot.", "positive", False),
    ("Perfect, I appreciate your help.", "positive", False),
    ("You've been wonderful, thank you.", "positive", False),
    ("The delivery was terrible but you fixed it, thanks.", "positive", False),
    ("I love the headphones, they work great.", "positive", False),
    ("That's brilliant news, thank you!", "positive", False),
    ("Okay, that makes sense, thanks.", "positive", False),
    ("My laptop stopped working after two weeks.", "negative", False),
    ("I'm really disappointed with this order.", "negative", False),
    ("My package still hasn't arrived and I've been waiting for ages.", "negative", False),
    ("The screen arrived cracked.", "negative", False),
    ("I was charged twice and I'm not happy about it.", "negative", False),
    ("The product is good but the service was awful.", "negative", False),
    ("I'm worried my account was hacked.", "negative", False),
    ("This is frustrating, nobody told me it would be late.", "negative", False),
    ("I'm fed up with waiting for this refund.", "negative", False),
    ("This is RIDICULOUS! Third time I call and nobody helps me!", "negative", True),
    ("This is absolutely unacceptable, I want to speak to a manager.", "negative", True),
    ("You people are incompetent, this is a scam!", "negative", True),
    ("I'm furious, you lied to me about the delivery date.", "negative", True),
    ("This is the worst service I have ever had, it's pathetic.", "negative", True),
    ("I am sick and tired of calling you every day!", "negative", True),
    ("What a waste of time and money, I'm so angry.", "negative", True),
]

"""Grade-school word problems (tasks.GSMTask): 16 templates, each a function of a seeded random.Random and a name
that returns (question, solution steps, answer). Every problem takes 2 to 4 arithmetic steps and has an integer
answer; each step line shows its arithmetic, as GSM8K's solutions do.
"""

from __future__ import annotations

import random

GSM_NAMES = ("Ava", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kofi", "Lena",
             "Mateo", "Nadia", "Omar", "Priya")  # fmt: skip
GSMProblem = tuple[str, list[str], int]  # question, solution steps, answer


def gsm_change(rng: random.Random, name: str) -> GSMProblem:
    n1, p1, n2, p2 = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 5), rng.randint(1, 4)
    a, b = n1 * p1, n2 * p2
    bill = 50 if a + b < 50 else 100
    question = (
        f"{name} buys {n1} notebooks for ${p1} each and {n2} pens for ${p2} each, and pays with a ${bill} "
        f"bill. How many dollars of change does {name} get?"
    )
    steps = [
        f"The notebooks cost {n1} * {p1} = {a} dollars.",
        f"The pens cost {n2} * {p2} = {b} dollars.",
        f"Together they cost {a} + {b} = {a + b} dollars.",
        f"The change is {bill} - {a + b} = {bill - a - b}.",
    ]
    return question, steps, bill - a - b


def gsm_eggs(rng: random.Random, name: str) -> GSMProblem:
    laid, eaten, price = rng.randint(10, 20), rng.randint(2, 6), rng.randint(2, 5)
    left = laid - eaten
    question = (
        f"{name}'s hens lay {laid} eggs a day. {name} eats {eaten} of them each day and sells the rest for "
        f"${price} an egg. How many dollars does {name} make in a week?"
    )
    steps = [
        f"Each day {laid} - {eaten} = {left} eggs are sold.",
        f"That is {left} * {price} = {left * price} dollars a day.",
        f"In a week: {left * price} * 7 = {left * price * 7} dollars.",
    ]
    return question, steps, left * price * 7


def gsm_reading(rng: random.Random, name: str) -> GSMProblem:
    per_day, days = rng.randint(10, 30), rng.randint(3, 9)
    pages = per_day * days + rng.randint(10, 100)
    question = (
        f"A book has {pages} pages. {name} reads {per_day} pages a day for {days} days. How many pages are "
        "left to read?"
    )
    steps = [
        f"{name} reads {per_day} * {days} = {per_day * days} pages.",
        f"Left: {pages} - {per_day * days} = {pages - per_day * days}.",
    ]
    return question, steps, pages - per_day * days


def gsm_saving(rng: random.Random, name: str) -> GSMProblem:
    saved, weekly, weeks = rng.randint(10, 60), rng.randint(5, 20), rng.randint(3, 12)
    price = saved + weekly * weeks
    question = (
        f"{name} has saved ${saved} and saves ${weekly} more each week. How many weeks until {name} can buy "
        f"a bike that costs ${price}?"
    )
    steps = [
        f"{name} still needs {price} - {saved} = {price - saved} dollars.",
        f"That takes {price - saved} / {weekly} = {weeks} weeks.",
    ]
    return question, steps, weeks


def gsm_bus(rng: random.Random, name: str) -> GSMProblem:
    classes, size = rng.randint(3, 8), 3 * rng.randint(6, 10)
    total = classes * size
    question = (
        f"{name}'s school has {classes} classes of {size} students. One third of the students take the bus "
        "and the rest walk. How many students walk?"
    )
    steps = [
        f"There are {classes} * {size} = {total} students.",
        f"{total} / 3 = {total // 3} take the bus.",
        f"{total} - {total // 3} = {total - total // 3} walk.",
    ]
    return question, steps, total - total // 3


def gsm_baking(rng: random.Random, name: str) -> GSMProblem:
    per_batch, cups, batches = 6 * rng.randint(2, 4), rng.randint(2, 4), rng.randint(2, 6)
    cookies, flour = per_batch * batches, cups * batches + rng.randint(1, 10)
    question = (
        f"A recipe makes {per_batch} cookies with {cups} cups of flour. {name} wants to bake {cookies} "
        f"cookies and has {flour} cups of flour. How many cups of flour will be left?"
    )
    steps = [
        f"{name} bakes {cookies} / {per_batch} = {batches} batches.",
        f"They use {batches} * {cups} = {batches * cups} cups.",
        f"Left: {flour} - {batches * cups} = {flour - batches * cups} cups.",
    ]
    return question, steps, flour - batches * cups


def gsm_travel(rng: random.Random, name: str) -> GSMProblem:
    v, h1, w, h2 = 5 * rng.randint(4, 13), rng.randint(2, 5), 5 * rng.randint(4, 13), rng.randint(2, 4)
    question = (
        f"{name} drives {h1} hours at {v} miles per hour, then {h2} hours at {w} miles per hour. How many "
        f"miles does {name} drive in all?"
    )
    steps = [
        f"First {h1} * {v} = {h1 * v} miles.",
        f"Then {h2} * {w} = {h2 * w} miles.",
        f"In all {h1 * v} + {h2 * w} = {h1 * v + h2 * w} miles.",
    ]
    return question, steps, h1 * v + h2 * w


def gsm_sharing(rng: random.Random, name: str) -> GSMProblem:
    friends, each = rng.randint(2, 6), rng.randint(3, 12)
    total = friends * each
    has = rng.randint(1, total - 1)
    question = (
        f"{name} has {has} apples and buys {total - has} more, then shares them equally among {friends} "
        "friends. How many apples does each friend get?"
    )
    steps = [f"{name} has {has} + {total - has} = {total} apples.", f"Each friend gets {total} / {friends} = {each}."]
    return question, steps, each


def gsm_wages(rng: random.Random, name: str) -> GSMProblem:
    rate, hours, days = rng.randint(8, 20), rng.randint(3, 8), rng.randint(3, 6)
    daily = rate * hours
    spent = rng.randint(10, daily * days - 1)
    question = (
        f"{name} earns ${rate} an hour and works {hours} hours a day for {days} days, then spends ${spent}. "
        f"How many dollars does {name} have left?"
    )
    steps = [
        f"A day's pay is {rate} * {hours} = {daily} dollars.",
        f"{days} days pay {daily} * {days} = {daily * days} dollars.",
        f"Left: {daily * days} - {spent} = {daily * days - spent} dollars.",
    ]
    return question, steps, daily * days - spent


def gsm_garden(rng: random.Random, name: str) -> GSMProblem:
    rows, plants, each = rng.randint(3, 8), rng.randint(4, 10), rng.randint(2, 6)
    total = rows * plants * each
    box = rng.choice([d for d in range(4, 13) if total % d == 0])
    question = (
        f"{name} plants {rows} rows of {plants} tomato plants. Each plant gives {each} tomatoes, packed in "
        f"boxes of {box}. How many boxes does {name} fill?"
    )
    steps = [
        f"There are {rows} * {plants} = {rows * plants} plants.",
        f"They give {rows * plants} * {each} = {total} tomatoes.",
        f"That fills {total} / {box} = {total // box} boxes.",
    ]
    return question, steps, total // box


def gsm_discount(rng: random.Random, name: str) -> GSMProblem:
    percent = rng.choice((10, 20, 25, 50))
    price = 40 * rng.randint(1, 5) if percent == 25 else 10 * rng.randint(3, 20)
    count = rng.randint(2, 4)
    off = price * percent // 100
    question = (
        f"A jacket costs ${price}. In a sale it is {percent}% off. How many dollars does {name} pay for "
        f"{count} jackets in the sale?"
    )
    steps = [
        f"The discount is {price} * {percent} / 100 = {off} dollars.",
        f"One jacket costs {price} - {off} = {price - off} dollars.",
        f"{count} jackets cost {count} * {price - off} = {count * (price - off)} dollars.",
    ]
    return question, steps, count * (price - off)


def gsm_ages(rng: random.Random, name: str) -> GSMProblem:
    age, times = rng.randint(3, 12), rng.randint(2, 4)
    parent = times * age
    younger = rng.randint(1, parent - 1)
    question = (
        f"{name} is {age} years old. {name}'s aunt is {times} times as old, and {name}'s uncle is {younger} "
        "years younger than the aunt. What is the sum of their three ages?"
    )
    steps = [
        f"The aunt is {times} * {age} = {parent}.",
        f"The uncle is {parent} - {younger} = {parent - younger}.",
        f"The sum is {age} + {parent} + {parent - younger} = {age + 2 * parent - younger}.",
    ]
    return question, steps, age + 2 * parent - younger


def gsm_marbles(rng: random.Random, name: str) -> GSMProblem:
    start = rng.randint(20, 60)
    given = rng.randint(3, start // 2)
    question = (
        f"{name} has {start} marbles and gives {given} to a friend. Then {name}'s brother gives {name} twice "
        f"as many marbles as were given away. How many marbles does {name} have now?"
    )
    steps = [
        f"After giving: {start} - {given} = {start - given}.",
        f"The brother gives 2 * {given} = {2 * given}.",
        f"Now: {start - given} + {2 * given} = {start + given}.",
    ]
    return question, steps, start + given


def gsm_pizza(rng: random.Random, name: str) -> GSMProblem:
    pizzas, slices, each = rng.randint(2, 6), rng.choice((6, 8, 10, 12)), rng.randint(2, 3)
    total = pizzas * slices
    people = rng.randint(2, (total - 1) // each)
    question = (
        f"{name} orders {pizzas} pizzas cut into {slices} slices each. {people} people eat {each} slices "
        "each. How many slices are left?"
    )
    steps = [
        f"There are {pizzas} * {slices} = {total} slices.",
        f"They eat {people} * {each} = {people * each} slices.",
        f"Left: {total} - {people * each} = {total - people * each}.",
    ]
    return question, steps, total - people * each


def gsm_tickets(rng: random.Random, name: str) -> GSMProblem:
    adult = rng.randint(8, 20)
    child, adults, children = rng.randint(3, adult - 1), rng.randint(2, 4), rng.randint(2, 5)
    question = (
        f"Museum tickets cost ${adult} for adults and ${child} for children. {name} buys tickets for "
        f"{adults} adults and {children} children. How many dollars is that?"
    )
    steps = [
        f"Adults: {adults} * {adult} = {adults * adult} dollars.",
        f"Children: {children} * {child} = {children * child} dollars.",
        f"Total: {adults * adult} + {children * child} = {adults * adult + children * child} dollars.",
    ]
    return question, steps, adults * adult + children * child


def gsm_tank(rng: random.Random, name: str) -> GSMProblem:
    rate, minutes, has = rng.randint(2, 12), rng.randint(5, 30), rng.randint(10, 200)
    size = has + rate * minutes
    question = (
        f"{name}'s tank holds {size} liters and has {has} liters in it. A hose adds {rate} liters a minute. "
        "How many minutes until the tank is full?"
    )
    steps = [
        f"It needs {size} - {has} = {size - has} liters.",
        f"That takes {size - has} / {rate} = {minutes} minutes.",
    ]
    return question, steps, minutes


GSM_TEMPLATES = (
    gsm_change,
    gsm_eggs,
    gsm_reading,
    gsm_saving,
    gsm_bus,
    gsm_baking,
    gsm_travel,
    gsm_sharing,
    gsm_wages,
    gsm_garden,
    gsm_discount,
    gsm_ages,
    gsm_marbles,
    gsm_pizza,
    gsm_tickets,
    gsm_tank,
)

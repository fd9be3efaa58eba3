"""Question/answer pairs from inline reStructuredText docs, and from Django's real docs;
questions the docs cannot answer, kept only while no document names what they ask about."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.corpus import DocRow
from ragtune.core.qa_pairs import QAPair, qa_pairs
from ragtune.core.unanswerable import ABSTENTION, QUESTIONS, unanswerable_pairs

ROOT = Path(__file__).resolve().parents[2]

FAQ = """\
.. _faq-raw-sql:

How can I see the raw SQL queries Django is running?
====================================================

Make sure your Django :setting:`DEBUG` setting is set to ``True``.
Then do this:

.. code-block:: pycon

    >>> from django.db import connection
    >>> connection.queries

``connection.queries`` is only available if :setting:`DEBUG` is ``True``.
See :doc:`multiple databases </topics/db/multi-db>` for *more*.

Can I use ``Django`` with a :doc:`preexisting database </howto/legacy-databases>`?
==================================================================================

Yes. See :ref:`legacy-databases`.

.. note::

    Read the **whole** guide first.

Some heading that is not a question
===================================

Plenty of text here that is long enough to be prose but sits in an FAQ document.
"""

TOPIC = """\
Intro text before any heading, which is the document's own introduction and long.

Field options
=============

Each field takes a certain set of field-specific arguments (documented in the
:ref:`model field reference <model-field-types>`). For example,
:class:`~django.db.models.CharField` requires a ``max_length`` argument.

Creating forms
==============

::

    class NameForm(forms.Form):
        your_name = forms.CharField(label="Your name", max_length=100)

Then the text after the code, which must not become the answer of this heading.

.. _legacy-databases:

Using a legacy database
=======================

Django is best suited for developing new applications, but it's quite possible to
integrate it into legacy databases. Here is how:

.. code-block:: python

    inspectdb()

``null``
--------

.. attribute:: Field.null

    If ``True``, Django will store empty values as ``NULL`` in the database. Default
    is ``False``, and you should think twice.

``django.utils.text``
---------------------

.. module:: django.utils.text
   :synopsis: Text utilities.

.. function:: slugify(value)

    Converts a string to a URL slug, which is a description of ``slugify`` and not of
    the module.

See also
--------

* :doc:`/topics/forms/index`
* :doc:`/ref/forms/api`

Short
-----

Too short to be an answer.
"""


def docs() -> list[DocRow]:
    return [
        DocRow("faq/models", "FAQ: Databases and models", FAQ, "u1", "faq"),
        DocRow("topics/db/models", "Models", TOPIC, "u2", "topics"),
        DocRow("releases/5.2", "Django 5.2 release notes", TOPIC, "u3", "releases"),
        DocRow("topics/db/multi-db", "Multiple databases", "", "u4", "topics"),
    ]


def by_question(pairs: list[QAPair]) -> dict[str, QAPair]:
    return {p.question: p for p in pairs}


def test_faq_question_headings_become_pairs_with_clean_answers() -> None:
    faq = [p for p in qa_pairs(docs()) if p.kind == "faq"]
    assert [p.question for p in faq] == [
        "How can I see the raw SQL queries Django is running?",
        "Can I use Django with a preexisting database?",
    ]
    raw_sql, legacy = faq
    assert raw_sql.document == "faq/models"
    assert raw_sql.id == "faq/models#how-can-i-see-the-raw-sql-queries-django-is-running"
    assert raw_sql.answer == (
        "Make sure your Django DEBUG setting is set to True.\n\n"
        "connection.queries is only available if DEBUG is True. "
        "See multiple databases for more."
    )
    assert "connection.queries\n" not in raw_sql.answer and ">>>" not in raw_sql.answer
    assert legacy.answer == "Yes. See Using a legacy database.\n\nRead the whole guide first."


def test_heading_pairs_use_templates_and_skip_code_links_and_short_paragraphs() -> None:
    pairs = by_question([p for p in qa_pairs(docs()) if p.kind == "heading"])
    assert set(pairs) == {
        "What does the Django documentation on models say about field options?",
        "How do I use a legacy database in Django?",
        "What is null in the Django documentation on models?",
    }
    options = pairs["What does the Django documentation on models say about field options?"]
    assert options.answer == (
        "Each field takes a certain set of field-specific arguments (documented in the "
        "model field reference). For example, CharField requires a max_length argument."
    )
    assert options.id == "topics/db/models#field-options"
    null = pairs["What is null in the Django documentation on models?"]
    assert null.answer.startswith("If True, Django will store empty values as NULL")
    legacy = pairs["How do I use a legacy database in Django?"]
    assert legacy.answer.endswith("integrate it into legacy databases.")  # lead-in dropped
    assert all(p.document == "topics/db/models" for p in pairs.values())


def test_each_pair_has_the_category_of_its_question() -> None:
    categories = {p.question: p.category for p in qa_pairs(docs())}
    assert categories == {
        "How can I see the raw SQL queries Django is running?": "faq",
        "Can I use Django with a preexisting database?": "faq",
        "What does the Django documentation on models say about field options?": "topic",
        "How do I use a legacy database in Django?": "how-to",
        "What is null in the Django documentation on models?": "reference",
    }
    heading_question = DocRow("topics/x", "X", "Why not?\n========\n\n" + "Prose. " * 20, "", "t")
    assert [p.category for p in qa_pairs([heading_question])] == ["faq"]


def test_unanswerable_questions_abstain_and_drop_what_a_document_names() -> None:
    pairs = unanswerable_pairs(docs())
    assert len(pairs) == len(QUESTIONS) >= 36
    assert {(p.answer, p.category, p.kind, p.document) for p in pairs} == {
        (ABSTENTION, "unanswerable", "unanswerable", None)
    }
    assert len({p.id for p in pairs}) == len({p.question for p in pairs}) == len(pairs)
    assert unanswerable_pairs(docs()) == pairs  # ids depend on the question alone
    # a corpus that names a command (in any case) answers its question: it is dropped
    naming = DocRow("ref/commands", "Commands", "The ``WarmCache`` command fills caches.", "", "r")
    kept = {p.question for p in unanswerable_pairs([*docs(), naming])}
    assert "What does the warmcache management command do?" not in kept
    assert len(kept) == len(pairs) - 1
    titled = DocRow("ref/x", "Using the GeoHashField", "", "", "r")
    assert len(unanswerable_pairs([titled])) == len(pairs) - 1


def test_same_input_same_output_and_rows() -> None:
    first, second = qa_pairs(docs()), qa_pairs(docs())
    assert first == second
    assert first[0].as_row() == {
        "id": first[0].id,
        "question": first[0].question,
        "answer": first[0].answer,
        "document": "faq/models",
        "kind": "faq",
        "category": "faq",
    }


def test_questions_and_ids_are_unique() -> None:
    twice = [*docs(), DocRow("topics/db/models2", "Models", TOPIC, "u5", "topics")]
    pairs = qa_pairs(twice)
    assert len({p.question.casefold() for p in pairs}) == len(pairs)
    assert len({p.id for p in pairs}) == len(pairs)
    assert not any(p.document == "topics/db/models2" for p in pairs)  # same questions, dropped


def test_max_pairs_keeps_faq_first() -> None:
    assert [p.kind for p in qa_pairs(docs(), max_pairs=3)] == ["faq", "faq", "heading"]
    assert qa_pairs(docs(), max_pairs=0) == []
    assert len(qa_pairs(docs(), max_pairs=100)) == 5


@pytest.mark.parametrize("limit", [10, 40, 60, 90, 200])
def test_answers_are_bounded_at_sentence_boundaries(limit: int) -> None:
    pairs = qa_pairs(docs(), max_answer_chars=limit)
    assert len(pairs) == 5
    for pair in pairs:
        assert 0 < len(pair.answer) <= limit
        assert pair.answer.endswith((".", "…")), pair.answer


def test_answer_cut_after_a_sentence_or_else_a_word() -> None:
    legacy = "Can I use Django with a preexisting database?"
    assert by_question(qa_pairs(docs(), max_answer_chars=40))[legacy].answer == (
        "Yes. See Using a legacy database."
    )
    assert by_question(qa_pairs(docs(), max_answer_chars=8))[legacy].answer == "Yes."
    raw_sql = by_question(qa_pairs(docs(), max_answer_chars=20))[
        "How can I see the raw SQL queries Django is running?"
    ]
    assert raw_sql.answer == "Make sure your…"


def test_odd_input_does_not_crash() -> None:
    odd = [
        DocRow("faq/empty", "", "", "", "faq"),
        DocRow("faq/odd", "FAQ", "?\n=\n\n``  ``?\n=====\n\nÄnswer — ünïcode.\n", "", "faq"),
        DocRow("topics/odd", "Tïtle", "***\n\nÜber\n====\n\n" + "Prosé " * 30 + "\n", "", "t"),
        DocRow(
            "topics/table", "T", "Head\n====\n\n=====  =====\na      b\n=====  =====\n", "", "t"
        ),
        DocRow("topics/lines", "L", "\n\n.. \n\n::\n\n  x\n\n* \n\n", "", "t"),
    ]
    pairs = qa_pairs(odd)
    assert [p.document for p in pairs] == ["topics/odd"]
    assert pairs[0].question == "What does the Django documentation on tïtle say about über?"
    assert qa_pairs([]) == []


def test_real_django_docs() -> None:
    sdists = sorted((ROOT / "data/demo/sdist").glob("[Dd]jango-*.tar.gz"))
    if not sdists:
        pytest.skip("no Django sdist under data/demo/sdist (fetched by the demo)")
    from ragtune.demo import read_docs

    pairs = qa_pairs(read_docs(sdists[-1]))
    assert sum(p.kind == "faq" for p in pairs) >= 30
    assert len(pairs) >= 500
    for pair in pairs:
        assert pair.answer.strip() and pair.question.strip()
        assert len(pair.answer) <= 600
        for markup in (":doc:`", ":ref:`", ":setting:`", ":class:`", "``"):
            assert markup not in pair.answer and markup not in pair.question, pair


def test_real_django_docs_hold_no_term_of_the_unanswerable_questions() -> None:
    sdists = sorted((ROOT / "data/demo/sdist").glob("[Dd]jango-*.tar.gz"))
    if not sdists:
        pytest.skip("no Django sdist under data/demo/sdist (fetched by the demo)")
    import tarfile

    from ragtune.demo import read_docs

    pairs = unanswerable_pairs(read_docs(sdists[-1]))
    assert len(pairs) >= 36
    # oracle: every file under docs/ of the archive, raw, whatever its suffix
    with tarfile.open(sdists[-1]) as archive:
        raw = "\n".join(
            archive.extractfile(m).read().decode("utf-8", "replace").casefold()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile() and m.name.split("/")[1:2] == ["docs"]
        )
    asked = {p.question for p in pairs}
    for item in QUESTIONS:
        if item.question in asked:
            assert not any(term.casefold() in raw for term in item.absent), item

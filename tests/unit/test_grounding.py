"""Groundedness and abstention detection, on answers as small models phrase them."""

from __future__ import annotations

import pytest

from ragtune.core.grounding import abstains, content_words, groundedness, sentences

CHUNK = "Team 3 wears a blue badge. Team 8 wears a red badge and plays on Sundays."

ABSTAINING = [
    "The sources do not say.",
    "The sources don't mention when Django 9 will be released.",
    "The provided sources do not contain information about the release date [1].",
    "The sources provided don't explicitly mention a default timeout.",
    "I'm sorry, but the documentation does not specify that.",
    "I don't know.",
    "I do not have that information.",
    "I couldn't find the answer in the sources.",
    "I cannot answer this from the given sources.",
    "There is no information about the maintainers' salaries in the sources.",
    "There's no mention of GraphQL support.",
    "No information about this is given.",
    "That is not mentioned in the sources.",
    "This is not covered by the provided documents.",
    "The answer is not in the sources.",
    "Unfortunately, the provided context does not say which database is fastest.",
    "There is not enough information to answer.",
    "This question cannot be answered from the sources.",
    "Django’s docs don’t say.",  # typographic apostrophes
    "Team 3 wears blue. The sources do not say what team 4 wears.",
]

ANSWERING = [
    "Team 3 wears a blue badge [1].",
    "The migrate command does not create tables for unmanaged models.",
    "The template context does not contain the request unless the processor is enabled.",
    "If the text does not contain a match, None is returned.",
    "There is no limit on the number of installed apps.",
    "Django is unable to find the template and raises TemplateDoesNotExist.",
    "No, the cache does not store sessions by default.",
    "Session information does not persist after logout.",
    "The docs say the default list does not include the admin.",
    "Set USE_TZ = True; Django then stores datetimes in UTC.",
    "",
]


@pytest.mark.parametrize("answer", ABSTAINING)
def test_abstentions_are_recognised(answer: str) -> None:
    assert abstains(answer)


@pytest.mark.parametrize("answer", ANSWERING)
def test_answers_and_documentation_claims_are_not_abstentions(answer: str) -> None:
    assert not abstains(answer)


def test_sentences_split_at_ends_and_line_breaks_not_inside_names() -> None:
    text = "Edit settings.py first. Then run it!\nDone? Yes"
    assert sentences(text) == ["Edit settings.py first.", "Then run it!", "Done?", "Yes"]


def test_content_words_drop_stop_words_articles_citations_and_plurals() -> None:
    assert content_words("The teams wear their badges [2] on Sundays.") == {
        "team",
        "wear",
        "badge",
        "sunday",
    }
    assert content_words("What entries does it hold?") == {"entry", "hold"}


def test_a_sentence_counts_when_80_percent_of_its_content_words_are_in_the_cited_chunks() -> None:
    assert groundedness("Team 3 wears a blue badge [1].", [CHUNK]) == 1.0
    # two claims, one invented ("green", "Mondays" are not in the chunk)
    answer = "Team 3 wears a blue badge [1]. Team 5 wears a green badge on Mondays."
    assert groundedness(answer, [CHUNK]) == 0.5
    # 4 of 5 content words found (team, 8, red, badge; not "saturday"): 0.8, supported
    assert groundedness("Team 8: red badge, Saturdays.", [CHUNK]) == 1.0
    # 3 of 4 (team, 3, badge; not "green"): 0.75, unsupported
    assert groundedness("Team 3 badge green.", [CHUNK]) == 0.0


def test_words_may_come_from_several_cited_chunks() -> None:
    chunks = ["Team 3 wears a blue badge.", "Badges are cotton."]
    assert groundedness("Team 3 badge: cotton [1][2].", chunks) == 1.0
    assert groundedness("Team 3 badge: cotton [1].", chunks[:1]) == 0.0  # 3 of 4 words


def test_no_cited_chunk_grounds_nothing_and_an_answer_without_claims_is_vacuously_grounded() -> (
    None
):
    assert groundedness("Team 3 wears a blue badge.", []) == 0.0
    assert groundedness("The sources do not say.", []) == 1.0  # an abstention claims nothing
    assert groundedness("", [CHUNK]) == 1.0
    # the abstaining sentence is not counted; the claim next to it is
    assert groundedness("Team 3 wears blue [1]. The sources do not say more.", [CHUNK]) == 1.0

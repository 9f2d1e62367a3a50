"""Search a person's conversations by title and message content.

One interface, `search_conversations`, over the database's own full-text
search: PostgreSQL's `to_tsvector`/`to_tsquery` (English stemming, GIN
expression indexes made by migration 0004) or SQLite's FTS5 (the porter
stemmer, tables kept in step with the chat tables by triggers). Results come
newest first and page with the sidebar's keyset cursor.

A query is reduced to its words (letters and digits) before either syntax sees
it, so no operator, quote or column filter typed by a person reaches the
database; a conversation matches when its title and messages hold every word
between them, the last one as a prefix (the list filters while the person
types). Replies still streaming are not indexed: they are
rewritten every few hundred milliseconds and become searchable when they end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVector
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max, Q
from django.db.models.expressions import RawSQL

from chat.models import Conversation, Message
from chat.selectors import ConversationCursor, ConversationPage, page_of

MAX_TERMS = 8
MAX_TERM_CHARS = 64
# What a snippet shows around the words found, in words.
SNIPPET_WORDS = 16
ELLIPSIS = "…"
# Highlight delimiters the database puts around matches; private-use characters
# that typed text does not contain, parsed into parts (never trusted as HTML).
_START, _STOP = "\ue000", "\ue001"
_WORD = re.compile(r"[^\W_]+")

# PostgreSQL: the text search configuration of the indexes (migration 0004); the
# expressions must stay identical to those indexed or the planner cannot use them.
PG_CONFIG = "english"
MESSAGE_VECTOR = SearchVector("content", config=PG_CONFIG)
TITLE_VECTOR = SearchVector("title", config=PG_CONFIG)
INDEXED_MESSAGES = ~Q(status=Message.Status.STREAMING)


Parts = tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class SearchHit:
    """A conversation found, with its title and a snippet as (text, matched) parts.

    `snippet` comes from the newest matching message; it is empty when only the
    title matched.
    """

    conversation: Conversation
    title: Parts
    snippet: Parts


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: ConversationCursor | None


def search_terms(query: str) -> list[str]:
    """The words of a query, lower-cased; nothing else of it is kept."""
    return [word[:MAX_TERM_CHARS] for word in _WORD.findall(query.casefold())][:MAX_TERMS]


def search_conversations(
    user, query: str, *, limit: int, cursor: ConversationCursor | None = None
) -> SearchPage:
    """`user`'s conversations whose title or messages hold every word of `query`."""
    terms = search_terms(query)
    if not terms:
        return SearchPage(hits=[], next_cursor=None)
    backend = backend_for(DEFAULT_DB_ALIAS)
    owned = Conversation.objects.filter(owner=user)
    page: ConversationPage = page_of(backend.matching(owned, terms), after=cursor, limit=limit)
    ids = [c.pk for c in page.conversations]
    titles = backend.titles(ids, terms)
    snippets = backend.snippets(ids, terms)
    hits = [
        SearchHit(
            conversation=c,
            title=titles.get(c.pk) or ((c.display_title, False),),
            snippet=snippets.get(c.pk, ()),
        )
        for c in page.conversations
    ]
    return SearchPage(hits=hits, next_cursor=page.next_cursor)


def highlighted_parts(text: str) -> Parts:
    """Split text marked with the highlight delimiters into (text, matched) parts."""
    parts: list[tuple[str, bool]] = []
    matched = False
    for piece in re.split(f"([{_START}{_STOP}])", text):
        if piece == _START:
            matched = True
        elif piece == _STOP:
            matched = False
        elif piece:
            parts.append((piece, matched))
    return tuple(parts)


# --- backends ------------------------------------------------------------------------


class SearchBackend:
    """What each database provides; the queries all filter by the owner first."""

    def matching(self, owned, terms: list[str]):
        """`owned` narrowed to the conversations holding every term, in their title
        or any of their messages."""
        raise NotImplementedError

    def titles(self, ids: list[int], terms: list[str]) -> dict[int, Parts]:
        """Highlighted titles of the conversations `ids` whose title matches."""
        raise NotImplementedError

    def snippets(self, ids: list[int], terms: list[str]) -> dict[int, Parts]:
        """A highlighted snippet of the newest message of each of `ids` that holds
        any of the terms."""
        raise NotImplementedError


class PostgresSearch(SearchBackend):
    @staticmethod
    def tsquery(terms: list[str], operator: str) -> SearchQuery:
        # Terms are letters and digits only, so quoting them is enough; the
        # configuration stems each one ("running" → 'run').
        quoted = [f"'{term}'" for term in terms]
        quoted[-1] += ":*"
        return SearchQuery(f" {operator} ".join(quoted), search_type="raw", config=PG_CONFIG)

    def matching(self, owned, terms):
        conditions = Q()
        for term in self._without_stop_words(terms):
            query = self.tsquery([term], "&") if term is terms[-1] else self._word(term)
            in_messages = (
                Message.objects.annotate(search=MESSAGE_VECTOR)
                .filter(INDEXED_MESSAGES, search=query)
                .values("conversation_id")
            )
            in_title = owned.annotate(search=TITLE_VECTOR).filter(search=query).values("pk")
            conditions &= Q(pk__in=in_title) | Q(pk__in=in_messages)
        if not conditions:
            return owned.none()
        return owned.filter(conditions)

    @staticmethod
    def _word(term: str) -> SearchQuery:
        return SearchQuery(f"'{term}'", search_type="raw", config=PG_CONFIG)

    @staticmethod
    def _without_stop_words(terms: list[str]) -> list[str]:
        """Stop words ("the", "how") have no lexeme and would match nothing: skip them."""
        columns = ", ".join("numnode(to_tsquery(%s::regconfig, %s))" for _ in terms)
        params = []
        for n, term in enumerate(terms):
            params += [PG_CONFIG, f"'{term}'" + (":*" if n == len(terms) - 1 else "")]
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(f"SELECT {columns}", params)
            nodes = cursor.fetchone()
        return [term for term, count in zip(terms, nodes, strict=True) if count]

    def titles(self, ids, terms):
        query = self.tsquery(terms, "|")
        rows = (
            Conversation.objects.filter(pk__in=ids)
            .annotate(title_search=TITLE_VECTOR)
            .filter(title_search=query)
            .annotate(marked=self._headline("title", query))
            .values_list("pk", "marked")
        )
        return {pk: highlighted_parts(marked) for pk, marked in rows}

    def snippets(self, ids, terms):
        query = self.tsquery(terms, "|")
        newest = (
            Message.objects.filter(INDEXED_MESSAGES, conversation_id__in=ids)
            .annotate(search=MESSAGE_VECTOR)
            .filter(search=query)
            .values("conversation_id")
            .annotate(newest=Max("id"))
            .values("newest")
        )
        rows = (
            Message.objects.filter(pk__in=newest)
            .annotate(marked=self._headline("content", query))
            .values_list("conversation_id", "marked", "content")
        )
        return {
            cid: _with_ellipses(highlighted_parts(marked), content) for cid, marked, content in rows
        }

    @staticmethod
    def _headline(field: str, query: SearchQuery) -> SearchHeadline:
        return SearchHeadline(
            field,
            query,
            config=PG_CONFIG,
            start_sel=_START,
            stop_sel=_STOP,
            max_words=SNIPPET_WORDS,
            min_words=SNIPPET_WORDS // 2,
            short_word=2,
        )


class SqliteSearch(SearchBackend):
    """FTS5 over the chat tables (see "SQLite" below). Each text has two indexes: the
    porter stemmer's ("running" finds "run") and the plain words', which the word
    being typed is matched against as a prefix (the stemmer turns "deploy" into
    "deploi", which no prefix of "deployment" reaches)."""

    @staticmethod
    def _quoted(term: str) -> str:
        # A quoted FTS5 string: NEAR, AND, OR and NOT in it are words.
        return f'"{term}"'

    def _term_match(self, table: str, source_id: str, term: str, *, prefix: bool) -> Q:
        # `table`: the stemmed index; `table` + "_words": the plain words.
        sql = f"SELECT {source_id} FROM {table} WHERE {table} MATCH %s"
        matches = Q(pk__in=RawSQL(sql, (self._quoted(term),)))
        if prefix:
            words = f"{table}_words"
            sql = f"SELECT {source_id} FROM {words} WHERE {words} MATCH %s"
            matches |= Q(pk__in=RawSQL(sql, (self._quoted(term) + "*",)))
        return matches

    def matching(self, owned, terms):
        conditions = Q()
        for n, term in enumerate(terms):
            prefix = n == len(terms) - 1
            conditions &= self._term_match(
                "chat_conversation_fts", "rowid", term, prefix=prefix
            ) | self._term_match("chat_message_fts", "conversation_id", term, prefix=prefix)
        return owned.filter(conditions)

    def _queries(self, terms: list[str]) -> dict[str, str]:
        """Index suffix → an FTS5 query for rows holding any of the terms."""
        words = [self._quoted(term) for term in terms]
        return {"_words": " OR ".join([*words[:-1], words[-1] + "*"]), "": " OR ".join(words)}

    def _marked(self, base: str, function: str, row_ids: list[int], terms: list[str]) -> dict:
        """rowid → (the row's stored columns, its text marked by `function`), for the
        rows of `row_ids` holding any term; marks from the plain-words index (the
        prefix being typed is marked) where it matched, else from the stemmed one."""
        marked: dict[int, tuple] = {}
        for suffix, query in self._queries(terms).items():
            wanted = [pk for pk in row_ids if pk not in marked]
            if not wanted:
                break
            table = base + suffix
            extra = "".join(f", {column}" for column in SQLITE_INDEXED[base].columns[1:])
            call = function.format(table=table)
            arguments = (
                [_START, _STOP]
                if "highlight" in function
                else [_START, _STOP, ELLIPSIS, SNIPPET_WORDS]
            )
            for pk, *rest in self._fetch(
                f"SELECT rowid{extra}, {call} FROM {table} WHERE {table} MATCH %s"
                f" AND rowid IN ({_placeholders(wanted)})",
                [*arguments, query, *wanted],
            ):
                marked[pk] = (tuple(rest[:-1]), highlighted_parts(rest[-1]))
        return marked

    def titles(self, ids, terms):
        rows = self._marked("chat_conversation_fts", "highlight({table}, 0, %s, %s)", ids, terms)
        return {pk: parts for pk, (_, parts) in rows.items()}

    def snippets(self, ids, terms):
        if not ids:
            return {}
        # The newest message of each conversation holding any term, in either index.
        queries = self._queries(terms)
        inside = f"conversation_id IN ({_placeholders(ids)})"
        newest = self._fetch(
            "SELECT max(rowid) FROM ("
            " SELECT rowid, conversation_id FROM chat_message_fts_words"
            f" WHERE chat_message_fts_words MATCH %s AND {inside}"
            " UNION ALL SELECT rowid, conversation_id FROM chat_message_fts"
            f" WHERE chat_message_fts MATCH %s AND {inside}"
            ") GROUP BY conversation_id",
            [queries["_words"], *ids, queries[""], *ids],
        )
        rows = self._marked(
            "chat_message_fts",
            "snippet({table}, 0, %s, %s, %s, %s)",
            [pk for (pk,) in newest],
            terms,
        )
        return {int(stored[0]): parts for stored, parts in rows.values()}

    @staticmethod
    def _fetch(sql: str, params: list) -> list[tuple]:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


def _placeholders(values: Iterable) -> str:
    return ", ".join("%s" for _ in values)


def _with_ellipses(parts: Parts, content: str) -> Parts:
    """PostgreSQL's headline does not say whether text was left out around it:
    compare its first and last words with the message's."""
    shown = "".join(text for text, _ in parts).split()
    whole = content.split()
    if not shown or not whole:
        return parts
    head = () if shown[0] == whole[0] else ((ELLIPSIS, False),)
    tail = () if shown[-1] == whole[-1] else ((ELLIPSIS, False),)
    return (*head, *parts, *tail)


BACKENDS: dict[str, type[SearchBackend]] = {
    "postgresql": PostgresSearch,
    "sqlite": SqliteSearch,
}


def backend_for(alias: str) -> SearchBackend:
    vendor = connections[alias].vendor
    try:
        return BACKENDS[vendor]()
    except KeyError:
        raise ImproperlyConfigured(
            f"Conversation search supports PostgreSQL and SQLite, not {vendor}:"
            " set DATABASE_URL to a PostgreSQL database or leave it unset for SQLite."
        ) from None


# --- SQLite: the FTS5 indexes and the triggers that keep them in step -----------------
# External-content FTS5 tables: they index the chat tables' own text (no copy of
# it) and read it back from them for snippets. Triggers add and remove entries
# with the exact values indexed, as external-content tables require; a message
# is indexed while its status is not "streaming".
#
# Django rebuilds a SQLite table to alter it (a new table, the rows copied, the
# old one dropped), and the old table's triggers go with it: after every
# `migrate`, `ensure_sqlite_index` puts back what is missing and reindexes.

SQLITE_TOKENIZERS = {
    "": "porter unicode61 remove_diacritics 2",
    "_words": "unicode61 remove_diacritics 2",
}


@dataclass(frozen=True)
class _Indexed:
    source: str  # the chat table
    columns: tuple[str, ...]  # the first is the text; the others are stored, not indexed
    indexed_when: str  # which rows (of `new` or `old`) are in the index

    def values(self, row: str) -> str:
        return ", ".join(f"{row}.{column}" for column in ("id", *self.columns))

    def when(self, row: str) -> str:
        return self.indexed_when.format(row=row)


SQLITE_INDEXED = {
    "chat_message_fts": _Indexed(
        "chat_message", ("content", "conversation_id"), "{row}.status <> 'streaming'"
    ),
    "chat_conversation_fts": _Indexed("chat_conversation", ("title",), "1"),
}


def _fts_tables() -> dict[str, tuple[str, _Indexed]]:
    """FTS5 table → (its CREATE statement, what it indexes)."""
    tables = {}
    for base, indexed in SQLITE_INDEXED.items():
        text, *stored = indexed.columns
        columns = ", ".join([text, *(f"{column} UNINDEXED" for column in stored)])
        for suffix, tokenizer in SQLITE_TOKENIZERS.items():
            tables[base + suffix] = (
                f"CREATE VIRTUAL TABLE {base + suffix} USING fts5({columns},"
                f" content = '{indexed.source}', content_rowid = 'id',"
                f" tokenize = '{tokenizer}')",
                indexed,
            )
    return tables


def _triggers(fts: str, indexed: _Indexed) -> dict[str, str]:
    """Trigger name → its definition, keeping `fts` in step with its source table."""
    columns = ", ".join(("rowid", *indexed.columns))
    add = (
        f"INSERT INTO {fts} ({columns}) SELECT {indexed.values('new')} WHERE {indexed.when('new')};"
    )
    remove = (
        f"INSERT INTO {fts} ({fts}, {columns}) SELECT 'delete', {indexed.values('old')}"
        f" WHERE {indexed.when('old')};"
    )
    source = indexed.source
    changes = ", ".join(indexed.columns + (("status",) if "status" in indexed.indexed_when else ()))
    return {
        f"{fts}_insert": f"AFTER INSERT ON {source} BEGIN {add} END",
        f"{fts}_update": f"AFTER UPDATE OF {changes} ON {source} BEGIN {remove} {add} END",
        f"{fts}_delete": f"AFTER DELETE ON {source} BEGIN {remove} END",
    }


def ensure_sqlite_index(connection) -> list[str]:
    """Create the FTS5 tables and triggers that are missing, and reindex each table
    that was missing or missed one of its triggers. Returns the tables reindexed."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        present = {name for (name,) in cursor.fetchall()}
        if not {indexed.source for indexed in SQLITE_INDEXED.values()} <= present:
            return []  # the chat tables themselves are not there yet
        reindexed = []
        for fts, (create, indexed) in _fts_tables().items():
            triggers = _triggers(fts, indexed)
            missing = [name for name in triggers if name not in present]
            if fts not in present:
                cursor.execute(create)
            elif not missing:
                continue
            for name in missing:
                cursor.execute(f"CREATE TRIGGER {name} {triggers[name]}")
            columns = ", ".join(("rowid", *indexed.columns))
            cursor.execute(f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')")
            cursor.execute(
                f"INSERT INTO {fts} ({columns}) SELECT {', '.join(('id', *indexed.columns))}"
                f" FROM {indexed.source} WHERE {indexed.indexed_when.format(row=indexed.source)}"
            )
            reindexed.append(fts)
        return reindexed


def drop_sqlite_index(connection) -> None:
    with connection.cursor() as cursor:
        for fts, (_, indexed) in _fts_tables().items():
            for name in _triggers(fts, indexed):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(f"DROP TABLE IF EXISTS {fts}")

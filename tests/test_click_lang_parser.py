"""The Click language parser and flattener (clickos_agent.click.parser).

Expected graphs and messages follow Click 2.1's lib/lexer.cc.
"""

from __future__ import annotations

import pytest

from chains.errors import ConfigError
from clickos_agent.click.parser import parse, parse_collect

CLASSES = {"Idle", "Discard", "Queue", "Counter", "Classifier", "Tee", "Null", "Print",
           "Unqueue", "Strip", "FromDevice", "ToDevice", "InfiniteSource"}


def flat(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, int, str, int]]]:
    graph = parse(text, "t.click", CLASSES)
    elements = {e.name: (e.cls, e.config) for e in graph.elements.values()}
    conns = [(c.src, c.src_port, c.dst, c.dst_port) for c in graph.connections]
    return elements, conns


def errors(text: str) -> list[str]:
    _, errs, _ = parse_collect(text, "t.click", CLASSES)
    return [e.message for e in errs]


def where(text: str) -> list[tuple[int, int, str]]:
    _, errs, _ = parse_collect(text, "t.click", CLASSES)
    return [(e.line, e.col, e.message) for e in errs]


# ---------------------------------------------------------------- declarations and connections

def test_declaration_and_chain() -> None:
    elements, conns = flat("q :: Queue(10); Idle -> q -> Unqueue -> Discard;")
    assert elements == {"q": ("Queue", "10"), "Idle@2": ("Idle", ""),
                        "Unqueue@3": ("Unqueue", ""), "Discard@4": ("Discard", "")}
    assert conns == [("Idle@2", 0, "q", 0), ("q", 0, "Unqueue@3", 0), ("Unqueue@3", 0, "Discard@4", 0)]


def test_multiple_declaration_spreads_class_and_config() -> None:
    elements, _ = flat("a, b, c :: Queue(5)")
    assert elements == {n: ("Queue", "5") for n in "abc"}


def test_declaration_inside_connection() -> None:
    elements, conns = flat("Idle -> c :: Counter -> Discard; c2 :: Counter; Idle -> c2 -> Discard")
    assert elements["c"] == ("Counter", "") and elements["c2"] == ("Counter", "")
    assert ("Idle@1", 0, "c", 0) in conns and ("c2", 0, "Discard@6", 0) in conns


def test_ports_on_both_sides() -> None:
    _, conns = flat("c :: Classifier(12/0800, -); Idle -> c; c[1] -> [0]Discard; c[0] -> Discard")
    assert ("c", 1, "Discard@3", 0) in conns and ("c", 0, "Discard@4", 0) in conns


def test_port_lists_and_double_arrow() -> None:
    _, conns = flat("t :: Tee(3); Idle -> t; t[0, 1-2] => [0]Discard, Print(x), Discard")
    assert conns[1:] == [("t", 0, "Discard@3", 0), ("t", 1, "Print@4", 0), ("t", 2, "Discard@5", 0)]


def test_double_arrow_expands_missing_ports() -> None:
    _, conns = flat("t :: Tee(2); Idle -> t => Discard, Discard")
    assert conns[1:] == [("t", 0, "Discard@3", 0), ("t", 1, "Discard@4", 0)]


def test_fan_in_and_fan_out_with_single_arrow() -> None:
    _, conns = flat("a :: Idle; b :: Idle; d :: Discard; a, b -> d; e :: Tee; e -> d, Discard")
    assert ("a", 0, "d", 0) in conns and ("b", 0, "d", 0) in conns
    assert ("e", 0, "d", 0) in conns and ("e", 0, "Discard@5", 0) in conns


def test_duplicate_connections_are_merged() -> None:
    _, conns = flat("a :: Idle; d :: Discard; a -> d; a -> d;")
    assert conns == [("a", 0, "d", 0)]


def test_comments_quotes_and_nested_parentheses_in_config() -> None:
    text = '// line\n/* block\n */ Idle -> Print("a), /* not a comment */", f(x, (y))) -> Discard'
    elements, _ = flat(text)
    assert elements["Print@2"] == ("Print", '"a), /* not a comment */", f(x, (y))')


def test_config_spans_lines_and_keeps_braces() -> None:
    elements, _ = flat("Idle -> Print(x {a,\n b}\n) -> Discard;")
    assert elements["Print@2"][1] == "x {a,\n b}\n"


def test_element_names_with_slashes_and_at() -> None:
    elements, _ = flat("a/b :: Idle; x@y :: Discard; a/b -> x@y")
    assert set(elements) == {"a/b", "x@y"}


def test_anonymous_name_skips_taken_names() -> None:
    elements, _ = flat("Idle@1 :: Discard; Idle -> Idle@1")
    # the anonymous Idle would be Idle@2 (index 2); names are unique either way
    assert set(elements) == {"Idle@1", "Idle@2"}


def test_require_compact_config_and_unavailable_package() -> None:
    assert parse("require(compact_config); Idle -> Discard", "t", CLASSES).requirements == ["compact_config"]
    assert errors("require(package foo); Idle -> Discard") == ["requirement 'foo' not available"]
    assert errors('require("foo")') == ["requirement 'foo' not available"]


def test_line_directive_sets_file_and_line() -> None:
    _, errs, _ = parse_collect('# 40 "orig.click"\nx -> Discard', "t.click", CLASSES)
    assert [(e.file, e.line) for e in errs] == [("orig.click", 40)]


# ---------------------------------------------------------------- compounds

def test_compound_with_formals_flattens_with_prefix() -> None:
    text = """
    elementclass Q { $cap | input -> q :: Queue($cap) -> output }
    Idle -> x :: Q(7) -> Unqueue -> Discard;
    """
    elements, conns = flat(text)
    assert elements["x/q"] == ("Queue", "7") and "x" not in elements
    assert ("Idle@1", 0, "x/q", 0) in conns and ("x/q", 0, "Unqueue@3", 0) in conns


def test_compound_keyword_and_rest_formals() -> None:
    text = """
    elementclass P { $a, KEY $k, __REST__ $r | input -> Print($a $k, $r) -> output }
    Idle -> P(1, 2, KEY 3, 4) -> Discard
    """
    elements, _ = flat(text)
    assert elements["P@2/Print@1"] == ("Print", "1 3, 2, 4")


def test_nested_compounds_and_anonymous_inner_names() -> None:
    text = """
    elementclass Inner { input -> Counter -> output }
    elementclass Outer { input -> i :: Inner -> Null -> output }
    Idle -> o :: Outer -> Discard
    """
    elements, conns = flat(text)
    assert set(elements) == {"Idle@1", "Discard@3", "o/Null@2", "o/i/Counter@1"}
    assert set(conns) == {("o/i/Counter@1", 0, "o/Null@2", 0), ("Idle@1", 0, "o/i/Counter@1", 0),
                          ("o/Null@2", 0, "Discard@3", 0)}


def test_compound_passthrough_and_multiple_ports() -> None:
    text = """
    elementclass Split { input -> t :: Tee(2); t[0] -> output; t[1] -> [1]output }
    Idle -> s :: Split; s[0] -> Discard; s[1] -> input -> output -> Discard
    """
    assert "undeclared element 'input'" in errors(text)
    elements, conns = flat("""
    elementclass Pass { input -> output }
    Idle -> Pass -> Discard
    """)
    assert conns == [("Idle@1", 0, "Discard@3", 0)]


def test_compound_overloads_by_port_count() -> None:
    text = """
    elementclass Two { input -> output || input -> [0]output; input[1] -> Null -> [1]output }
    a :: Two; Idle -> a -> Discard;
    b :: Two; Idle -> b; Idle -> [1]b; b -> Discard; b[1] -> Discard
    """
    elements, conns = flat(text)
    assert ("Idle@2", 0, "Discard@3", 0) in conns
    assert "b/Null@1" in elements


def test_compound_extension_falls_back_to_primitive() -> None:
    text = """
    elementclass Queue { $a, $b | input -> Queue($a) -> output || ... }
    Idle -> Queue(10) -> Discard;
    Idle -> Queue(1, 2) -> Discard;
    """
    elements, _ = flat(text)
    assert elements["Queue@2"] == ("Queue", "10")
    assert elements["Queue@5/Queue@1"] == ("Queue", "1")


def test_anonymous_compound_and_synonym_class() -> None:
    elements, _ = flat("elementclass Sink Discard; Idle -> { input -> Counter -> output } -> Sink")
    assert elements["@2/Counter@1"] == ("Counter", "") and elements["Sink@3"] == ("Discard", "")


def test_compound_scoping_of_classes_and_elements() -> None:
    assert "undeclared element 'q'" in errors(
        "q :: Queue; elementclass A { input -> q -> output } Idle -> A -> Discard")
    assert errors("elementclass A { elementclass B { input -> output } input -> B -> output }"
                  " Idle -> A -> B -> Discard") == ["undeclared element 'B'"]


def test_define_and_default_variables() -> None:
    elements, _ = flat("define($N 4, $M 5); Idle -> Queue($N) -> Print(${X-dflt} '$M' \"$M\") -> Discard")
    assert elements["Queue@2"][1] == "4"
    assert elements["Print@3"][1] == "dflt '$M' \"5\""


def test_groups() -> None:
    elements, conns = flat("Idle -> (input -> Counter -> output) -> Discard")
    assert set(elements) == {"Idle@1", "Counter@5", "Discard@6"}
    assert conns == [("Idle@1", 0, "Counter@5", 0), ("Counter@5", 0, "Discard@6", 0)]


def test_implicit_ports_in_compounds() -> None:
    elements, conns = flat("elementclass A { -> Counter -> } Idle -> A -> Discard")
    assert conns == [("Idle@1", 0, "A@2/Counter@1", 0), ("A@2/Counter@1", 0, "Discard@3", 0)]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("text, message", [
    ("a -> Discard", "undeclared element 'a'"),
    ("x :: Nope", "unknown element class 'Nope'"),
    ("q :: Queue; q :: Queue", "redeclaration of element 'q'"),
    ("Queue :: Counter", "class 'Queue' used as element name"),
    ("Idle -> -> Discard", "syntax error near '->'"),
    ("Idle -> Discard }", "syntax error near '}'"),
    ("Idle -> Queue(5", "expected ')'"),
    ("elementclass A { input -> output", "expected '}'"),
    ("Idle -> (input -> output", "expected ')'"),
    ("c :: Tee; c[x] -> Discard", "syntax error: port number should be integer"),
    ("c :: Tee; c[ -> Discard", "syntax error: expected port number"),
    ("Idle -> [0] ;", "stranded port ignored"),
    ("t :: Tee; t [0] ;", "output ports ignored at end of chain"),
    ("[0] t :: Tee;", "input ports ignored at start of chain"),
    ("t :: Tee(2); t[0, 1] -> Discard, Discard", "syntax error: many-to-many connections require '=>'"),
    ("t :: Tee(3); t[0, 1, 2] => Discard, Discard", "connection mismatch: 3 outputs connected to 2 inputs"),
    ("1 :: Idle", "element name '1' has all-digit component"),
    ("q :: Queue; q(5) -> Discard", "configuration string ignored on element reference"),
    ("x :: ;", "missing element type in declaration"),
    ("elementclass { }", "expected element type name"),
    ("elementclass A { $a, b | }", "expected variable"),
    ("elementclass A { $a, $a | }", "parameter '$a' multiply defined"),
    ("elementclass A { input -> Null -> [1]output }", "'A' output 0 missing"),
    ("elementclass A { input[1] -> Null -> output }", "'A' input 0 missing"),
    ("elementclass A { Null -> input; input -> output }",
     "'A' pseudoelement 'input' may only be used as output"),
    ("elementclass A { input -> output } Idle -> A(1) -> Discard",
     "no match for 'A[1 argument, 1 input, 1 output]'"),
    ("elementclass A { input -> output } Idle -> a :: A; a[1] -> Discard; a -> Discard",
     "'a' has no output 1"),
    ("elementclass A { input -> output } a :: A; Idle -> a;", "'a' output 0 unused"),
    ("elementclass A { ... }", "cannot extend unknown element class 'A'"),
    ("define(x 1)", "bad 'define' declaration: not a variable"),
    ("require(a b c)", "syntax error at requirement"),
    ("provide(x)", "syntax error near 'provide'"),
    ("#foo\nIdle -> Discard", "unknown preprocessor directive"),
])
def test_error_messages(text: str, message: str) -> None:
    assert any(e.startswith(message) for e in errors(text))


def test_errors_carry_line_and_column() -> None:
    assert where("Idle\n  -> x\n -> Discard") == [(2, 6, "undeclared element 'x'")]
    assert where("Idle -> Queue(1,\n2,\n3 -> Discard") == [(3, 13, "expected ')'")]


def test_parse_raises_config_error_with_all_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse("a -> b", "t.click", CLASSES)
    assert [(p.line, p.col) for p in info.value.problems] == [(1, 1), (1, 6)]


def test_implicit_start_warning_in_compound() -> None:
    _, errs, warns = parse_collect(
        "elementclass A { input -> Null; -> Counter -> output } Idle -> A -> Discard", "t", CLASSES)
    assert [w.message for w in warns] == ["suggest 'input ->' or '[0] ->' to start connection"]


# ---------------------------------------------------------------- Click's own regression tests
# (test/compound/*.clicktest in Click's repository: the expected flat graphs)

def test_click_compound_overload_test() -> None:
    text = """
    require(compact_config)
    elementclass Foo {
       $a, $b | input -> Print(1) -> output
    || $a, __REST__ $b | input -> Print(2) -> output
    || $a, TWO $b, __REST__ $c | input -> Print(3) -> output
    }
    InfiniteSource(DATA "", LIMIT 1, STOP true)
      -> Foo(A)
      -> f::Foo(A, TWO B)
    elementclass Foo {
       $a, $b | input -> Print(4) -> output
    || ...
    }
    f -> Foo(A, B) -> Foo(A, B, C) -> Discard
    """
    elements, conns = flat(text)
    assert elements == {
        "InfiniteSource@1": ("InfiniteSource", 'DATA "", LIMIT 1, STOP true'),
        "Discard@6": ("Discard", ""),
        "Foo@2/Print@1": ("Print", "2"),
        "f/Print@1": ("Print", "1"),
        "Foo@4/Print@1": ("Print", "4"),
        "Foo@5/Print@1": ("Print", "2"),
    }
    chain = ["InfiniteSource@1", "Foo@2/Print@1", "f/Print@1", "Foo@4/Print@1", "Foo@5/Print@1",
             "Discard@6"]
    assert set(conns) == {(a, 0, b, 0) for a, b in zip(chain, chain[1:])}


def test_click_indexed_variables_test() -> None:
    text = """
    elementclass Foo {
       $a | input -> Print("$a") -> Print("${a[0]}") -> Print("${a[2]}") -> Print("${a[3]}") -> output
    }
    elementclass Bar {
       $a, $n | input -> Print("${a[$n]}") -> output
    }
    elementclass Baz {
       $a | input -> Bar(${a[1]} ${a[0]}, ${a[2]}) -> output
    }
    InfiniteSource(DATA "", LIMIT 1, STOP true)
      -> Foo(A B C) -> Bar(D E F, 2) -> Baz(G H 1) -> Baz(I J 0) -> Discard
    """
    elements, _ = flat(text)
    prints = {name: config for name, (cls, config) in elements.items() if cls == "Print"}
    assert prints == {"Foo@2/Print@1": '"A B C"', "Foo@2/Print@2": '"A"', "Foo@2/Print@3": '"C"',
                      "Foo@2/Print@4": '""', "Bar@3/Print@1": '"F"',
                      "Baz@4/Bar@1/Print@1": '"G"', "Baz@5/Bar@1/Print@1": '"J"'}


def test_click_compound_inputs_test() -> None:
    text = """
    elementclass RS {
       __REST__ $rest | InfiniteSource($rest) -> output
    }
    elementclass P { input[0] -> Print -> [0]output }
    elementclass D { input[0] -> Discard }
    RS(DATA "I love myself\\n", LIMIT 10, STOP true) -> P -> D
    """
    elements, conns = flat(text)
    assert elements["RS@1/InfiniteSource@1"] == ("InfiniteSource", 'DATA "I love myself\\n", LIMIT 10, STOP true')
    assert set(conns) == {("RS@1/InfiniteSource@1", 0, "P@2/Print@1", 0),
                          ("P@2/Print@1", 0, "D@3/Discard@1", 0)}


# (test/tools/lexer-0N.clicktest and test/standard/landmarks-01.clicktest in Click's
# repository; only the checks that hold for the user-level driver)

MORE = CLASSES | {"PullNull", "Paint", "Message", "DriverManager"}


def edges(text: str) -> set[tuple[str, int, str, int]]:
    graph = parse(text, "t.click", MORE)
    return {(c.src, c.src_port, c.dst, c.dst_port) for c in graph.connections}


def test_click_lexer_commas_in_connections() -> None:
    assert edges("""a, b, c :: Idle;
        p, q :: PullNull;
        a, a[1] -> b -> p, q;
        p -> [0]c, [1]c; q -> [2]c;""") == {
        ("a", 0, "b", 0), ("a", 1, "b", 0), ("b", 0, "p", 0), ("b", 0, "q", 0),
        ("p", 0, "c", 0), ("p", 0, "c", 1), ("q", 0, "c", 2)}
    assert edges("a, b, c :: Idle; a => b, c, [0,1] a;") == {
        ("a", 0, "b", 0), ("a", 1, "c", 0), ("a", 2, "a", 0), ("a", 3, "a", 1)}
    assert edges("""a, b :: Idle;
        a -> { -> } -> b;
        a [1] -> { [0] -> [0] } -> [1] b;""") == {("a", 0, "b", 0), ("a", 1, "b", 1)}


def test_click_lexer_connection_errors() -> None:
    _, errs, _ = parse_collect("a, b, c, d :: Idle;\na [0,1] => [0,1,2] b;\nc [] => [] d;", "C", MORE)
    assert [(e.line, e.message) for e in errs] == [
        (2, "connection mismatch: 2 outputs connected to 3 inputs"),
        (3, "at most one expandable port allowed per connection")]
    _, errs, _ = parse_collect("a, b, c, d :: Idle;\na [0,1,2] -> [0,1,2] b;", "C2", MORE)
    assert [(e.line, e.message) for e in errs] == [
        (2, "syntax error: many-to-many connections require '=>'")]


@pytest.mark.parametrize("text", [
    "a, b, c, d :: Idle; a [0,1,2] => c, b, d;",
    "a, b, c, d :: Idle; a [0,1,2] => ( -> c ), ( -> b ), d;",
    "a, d :: Idle; a => (-> c :: Idle), (-> b :: Idle), d;",
])
def test_click_lexer_element_groups(text: str) -> None:
    assert edges(text) == {("a", 0, "c", 0), ("a", 1, "b", 0), ("a", 2, "d", 0)}


@pytest.mark.parametrize("text", [
    "elementclass Foo { a, b, c, d :: Idle; a [0,1,2] => c, b, d; } foo::Foo;",
    "elementclass Foo { a, b, c, d :: Idle; a [0,1,2] => ( -> c ), ( -> b ), d; } foo::Foo;",
    "elementclass Foo { a, d :: Idle; a => (-> c :: Idle), (-> b :: Idle), d; } foo::Foo;",
])
def test_click_lexer_element_groups_in_compounds(text: str) -> None:
    assert edges(text) == {("foo/a", 0, "foo/c", 0), ("foo/a", 1, "foo/b", 0),
                           ("foo/a", 2, "foo/d", 0)}


def test_click_lexer_nested_groups_and_compounds() -> None:
    text = """analyzer, x1, x2 :: Idle;
    x1 -> analyzer -> x2;
    c :: Idle =>
             [1] analyzer [1],
             (-> c2 :: Idle => (->), Paint(1) ->)
    -> post_classification :: Idle;"""
    graph = parse(text, "B", MORE)
    [paint] = [e.name for e in graph.elements.values() if e.cls == "Paint"]
    assert edges(text) == {
        ("x1", 0, "analyzer", 0), ("analyzer", 0, "x2", 0), ("analyzer", 1, "post_classification", 0),
        ("c", 0, "analyzer", 1), ("c", 1, "c2", 0), ("c2", 0, "post_classification", 0),
        ("c2", 1, paint, 0), (paint, 0, "post_classification", 0)}
    named = text.replace("(-> c2 :: Idle => (->), Paint(1) ->)",
                         "foo :: { -> c2 :: Idle => (->), Paint(1) -> }")
    assert ("c", 1, "foo/c2", 0) in edges(named) and ("foo/c2", 0, "post_classification", 0) in edges(named)


def test_click_lexer_lexical_scoping_of_formals() -> None:
    graph = parse("""elementclass Foo { $a | DriverManager($a); }
        elementclass Far { $a, $b | Foo($b); }
        Far(wait_stop stop, stop);""", "A", MORE)
    assert {e.name: e.config for e in graph.elements.values()} == {
        "Far@1/Foo@1/DriverManager@1": "stop"}
    graph = parse("""elementclass Foo {
        $a |
           elementclass Bar { $b | DriverManager($a); }
           elementclass Baz { $a | Idle; Bar($a); }
           Baz(fuckola);
        }
        Foo(stop);""", "B", MORE)
    assert {e.name: e.config for e in graph.elements.values()} == {
        "Foo@1/Baz@1/Idle@1": "", "Foo@1/Baz@1/Bar@2/DriverManager@1": "stop"}


def test_click_lexer_backslash_and_line_directive_in_config() -> None:
    graph = parse('m :: Message("\\\\");', "A", MORE)
    assert graph.elements["m"].config == '"\\\\"'
    graph = parse('m :: Message(\n# 100 "foobar.click"\n"test");\nm2 :: Message("test2");', "A.click", MORE)
    assert graph.elements["m"].config == '\n"test"'
    assert (graph.elements["m"].file, graph.elements["m"].line) == ("A.click", 1)
    assert (graph.elements["m2"].file, graph.elements["m2"].line) == ("foobar.click", 101)


def test_click_lexer_top_level_implicit_port_is_an_error() -> None:
    assert where("->Null;") == [(1, 1, "syntax error near '->'")]


def test_click_landmarks_redeclaration() -> None:
    text = '\nx :: Idle;\nyy :: Idle;\n# 1 "B"\nx :: Idle;\n# 5 "A"\ny :: PullNull;\nx[1] -> y -> x;\n'
    _, errs, _ = parse_collect(text, "A", MORE)
    assert [(e.file, e.line, e.message) for e in errs] == [
        ("B", 1, "redeclaration of element 'x'"), ("A", 2, "element 'x' previously declared here")]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert "maximum element group nesting depth exceeded" in errors("Idle -> " + "(" * 60 + "Null")
    assert "maximum compound element nesting depth exceeded" in errors("x :: { " * 60)
    chained = "elementclass C0 { input -> Null -> output }\n" + "".join(
        f"elementclass C{i} {{ input -> C{i - 1} -> output }}\n" for i in range(1, 150))
    assert "maximum compound element nesting depth exceeded" in errors(chained + "Idle -> C149 -> Discard")


def test_compound_keyword_arguments_accept_any_space() -> None:
    elements, _ = flat("elementclass K { KEY $k | input -> Print($k) -> output }\n"
                       "Idle -> K(KEY\t7) -> Discard")
    assert elements["K@2/Print@1"] == ("Print", "7")


def test_variable_expansion_quirks_match_click() -> None:
    # (both found by differential testing against a Click 2.1 build)
    # an expansion that leaves nothing leaves the configuration as written
    elements, _ = flat("define($x ); Idle -> Queue($x) -> Print(${w-}) -> Discard")
    assert elements["Queue@2"][1] == "$x" and elements["Print@3"][1] == "${w-}"
    # but text before the expansion keeps it: "a" + "" is "a"
    elements, _ = flat("define($x ); Idle -> Print(a$x b) -> Discard")
    assert elements["Print@2"][1] == "a b"
    # $(name) names a variable too
    elements, _ = flat("elementclass C { $n | input -> Queue($(n)) -> output } Idle -> C(5) -> Discard")
    assert elements["C@2/Queue@1"][1] == "5"

//! Tests of the `ngx` table: ngx.re, codecs, digests, args, clocks, constants.

use super::tests::run;

#[test]
fn re_match() {
    run(r#"
        local m = ngx.re.match("hello, 1234", "([0-9])(?<rest>[0-9]+)")
        assert(m[0] == "1234" and m[1] == "1" and m[2] == "234" and m.rest == "234")
        m = ngx.re.match("hello, world", "(world)|(hello)|(?<named>howdy)")
        assert(m[0] == "hello" and m[1] == false and m[2] == "hello" and m[3] == false and m.named == false)
        assert(ngx.re.match("hello", "xyz") == nil)
        m = ngx.re.match("HELLO, 美好生活", "hello, (.{2})", "iu")
        assert(m[1] == "美好", m[1])
        m = ngx.re.match("HELLO, 美好", "hello, (.{2})", "i")
        assert(m[1] == "\231\190", "without u a dot is a byte")
        assert(ngx.re.match("hello, world", "HEL LO  # comment", "ix")[0] == "hello")
        assert(ngx.re.match("a\nb", "^b", "m")[0] == "b" and ngx.re.match("a\nb", "^b") == nil)
        assert(ngx.re.match("a\nb", "a.b", "s") and not ngx.re.match("a\nb", "a.b"))
        assert(ngx.re.match("xab", "ab", "a") == nil and ngx.re.match("abx", "ab", "a")[0] == "ab")
        local ctx = {}
        assert(ngx.re.match("1234, hello", "[0-9]+", "", ctx)[0] == "1234" and ctx.pos == 5)
        ctx = { pos = 2 }
        assert(ngx.re.match("1234, hello", "[0-9]+", "", ctx)[0] == "234" and ctx.pos == 5)
        ctx = { pos = 6 }
        assert(ngx.re.match("1234, hello", "[a-z]+", "a", ctx) == nil)
        ctx = { pos = 7 }
        assert(ngx.re.match("1234, hello", "[a-z]+", "a", ctx)[0] == "hello")
        local res = {}
        assert(ngx.re.match("ab", "(a)(b)", "jo", nil, res) == res and res[2] == "b")
        m = ngx.re.match("hello, world", [[(?<named>\w+), (?<named>\w+)]], "D")
        assert(m.named[1] == "hello" and m.named[2] == "world")
        m = ngx.re.match("a.b/c", [[^a\.b\/(\w)$]])
        assert(m and m[1] == "c")
        assert(ngx.re.match("a{b}", "a{b}")[0] == "a{b}")
        assert(ngx.re.match("x-9z", [[[\d-z]+]])[0] == "-9z")
        assert(ngx.re.match("  tab\t", [[\h+\w+\s]])[0] == "  tab\t")
        assert(ngx.re.match("\xff\xfe", "\xff(.)")[1] == "\xfe")
        assert(ngx.re.match("aaa", "a++")[0] == "aaa" and ngx.re.match("aaa", "a+?")[0] == "a")
        assert(ngx.re.match(12345, "3(4)")[1] == "4")
        assert(ngx.re.match("x", [[\Qa.b\E|x]])[0] == "x" and ngx.re.match("a.b", [[\Qa.b\E]]))
        assert(ngx.re.match("AbC", "(?i)abc")[0] == "AbC")
        assert(ngx.re.match("é", "[é]")[0] == "é")
        local m2, err = ngx.re.match("abc", "(?<=a)b")
        assert(m2 == nil and err:find("^pcre2_compile%(%) failed: .* in \"%(%?<=a%)b\"$"), err)
        m2, err = ngx.re.match("abc", "(a")
        assert(m2 == nil and err:find("pcre2_compile"), err)
        m2, err = ngx.re.match("aa", [[(a)\1]])
        assert(m2 == nil and err:find("backreferences"), err)
    "#);
}

#[test]
fn re_find_and_gmatch() {
    run(r#"
        local s = "hello, 1234"
        local from, to = ngx.re.find(s, "([0-9]+)", "jo")
        assert(from == 8 and to == 11 and s:sub(from, to) == "1234")
        from, to = ngx.re.find(s, "([0-9])([0-9]+)", "jo", nil, 2)
        assert(from == 9 and to == 11)
        local a, b, err = ngx.re.find(s, "([0-9])", "jo", nil, 5)
        assert(a == nil and b == nil and err == "nth out of bound", err)
        assert(ngx.re.find(s, "(x)?h", "", nil, 1) == nil)
        assert(ngx.re.find(s, "z") == nil)
        a, b = ngx.re.find("abc", "")
        assert(a == 1 and b == 0)
        a, b, err = ngx.re.find("abc", "[")
        assert(a == nil and b == nil and err:find("pcre2_compile"))
        local out = {}
        for m in ngx.re.gmatch("hello, world!", "([a-z]+)", "i") do
            out[#out + 1] = m[0] .. "=" .. m[1]
        end
        assert(table.concat(out, ",") == "hello=hello,world=world")
        local it = ngx.re.gmatch("ab", "x*")
        local n = 0
        while true do
            local m = it()
            if not m then break end
            n = n + 1
            assert(m[0] == "")
        end
        assert(n == 3, n)
        local bad, e = ngx.re.gmatch("a", "(")
        assert(bad == nil and e:find("pcre2_compile"))
    "#);
}

#[test]
fn re_sub_gsub() {
    run(r#"
        local s, n = ngx.re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]")
        assert(s == "hello, [12][1]34" and n == 1, s)
        assert(ngx.re.sub("hello, 1234", "[0-9]", "${0}00") == "hello, 100234")
        assert(ngx.re.sub("hello, 1234", "[0-9]", "$$") == "hello, $234")
        s, n = ngx.re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]", "i")
        assert(s == "[hello,h], [world,w]" and n == 2, s)
        s, n = ngx.re.gsub("hello, world", "([a-z])[a-z]+", function(m) return "[" .. m[0] .. "," .. m[1] .. "]" end, "i")
        assert(s == "[hello,h], [world,w]" and n == 2)
        s = ngx.re.sub("hello, 1234", "( [0-9] ) [0-9]", function(m) return "[" .. m[0] .. "][" .. m[1] .. "]" end, "x")
        assert(s == "hello, [12][1]34", s)
        assert(ngx.re.gsub("abc", "b*", "-") == "-a--c-")
        assert(ngx.re.gsub("abc", "", "-") == "-a-b-c-")
        s, n = ngx.re.gsub("abc", "z", "y")
        assert(s == "abc" and n == 0)
        assert(ngx.re.gsub("k=v", "(?<key>\\w+)=(?<val>\\w+)", "${val}=${key}") == "v=k")
        assert(ngx.re.gsub("a-b", "-", function() return 1 end) == "a1b")
        local r, c, err = ngx.re.sub("abc", "b", "$x")
        assert(r == nil and c == nil and err == "failed to compile the replacement template")
        r, c, err = ngx.re.sub("abc", "b", "${1")
        assert(r == nil and err == "failed to compile the replacement template")
        assert(ngx.re.sub("abc", "(b)", "[$9]") == "a[]c")
        assert(ngx.re.gsub("/a//b", "/+", "/") == "/a/b")
        assert(ngx.re.gsub("x.y", "\\.", "\\") == "x\\y")
    "#);
}

#[test]
fn base64_and_digests() {
    run(r#"
        assert(ngx.encode_base64("hello") == "aGVsbG8=")
        assert(ngx.encode_base64("hello", true) == "aGVsbG8")
        assert(ngx.encode_base64("") == "" and ngx.encode_base64(nil) == "")
        assert(ngx.encode_base64(123) == "MTIz")
        assert(ngx.decode_base64("aGVsbG8=") == "hello" and ngx.decode_base64("aGVsbG8") == "hello")
        assert(ngx.decode_base64("aGVsbG8=trailing") == "hello")
        assert(ngx.decode_base64("a") == nil and ngx.decode_base64("a$==") == nil)
        assert(ngx.decode_base64("") == "")
        assert(ngx.decode_base64mime("aGVs\r\nbG8=") == "hello")
        assert(not pcall(ngx.encode_base64, "x", "yes"))
        assert(ngx.md5("hello") == "5d41402abc4b2a76b9719d911017c592")
        assert(ngx.md5("") == "d41d8cd98f00b204e9800998ecf8427e")
        assert(#ngx.md5_bin("hello") == 16 and ngx.encode_base64(ngx.md5_bin("hello")) == "XUFAKrxLKna5cZ2REBfFkg==")
        assert(ngx.encode_base64(ngx.sha1_bin("abc")) == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")
        local digest = ngx.hmac_sha1("thisisverysecretstuff", "some string we want to sign")
        assert(ngx.encode_base64(digest) == "R/pvxzHC4NLtj7S+kXFg/NePTmk=")
        assert(ngx.crc32_short("hello") == 907060870 and ngx.crc32_long("hello") == 907060870)
        assert(ngx.quote_sql_str("a'b\n") == [['a\'b\n']])
    "#);
}

#[test]
fn uri_escaping() {
    run(r#"
        assert(ngx.escape_uri("a b/c?d=e&f+g~h'!*()") == "a%20b%2Fc%3Fd%3De%26f%2Bg~h'!*()")
        assert(ngx.escape_uri("a b/c?#%", 0) == "a%20b/c%3F%23%25")
        assert(ngx.escape_uri("é") == "%C3%A9" and ngx.escape_uri(nil) == "")
        assert(not pcall(ngx.escape_uri, "x", 9))
        assert(ngx.unescape_uri("b%20r56+7") == "b r56 7")
        assert(ngx.unescape_uri("try %search%%20%again%") == "try %search% %again%")
        assert(ngx.unescape_uri("%C3%A9%zz%4") == "é%zz%4")
        for _, s in ipairs({"", "plain", "a b&c=d/é", "\0\1\255"}) do
            assert(ngx.unescape_uri(ngx.escape_uri(s)) == s)
        end
    "#);
}

#[test]
fn args_codec() {
    run(r#"
        assert(ngx.encode_args({foo = 3, ["b r"] = "hello world"}) == "b%20r=hello%20world&foo=3")
        assert(ngx.encode_args({baz = {32, "hello"}}) == "baz=32&baz=hello")
        assert(ngx.encode_args({a = true, b = 1}) == "a&b=1")
        assert(ngx.encode_args({a = false, b = {}}) == "")
        assert(ngx.encode_args({}) == "")
        assert(ngx.encode_args({x = {true, false, "v"}}) == "x&x=v")
        assert(not pcall(ngx.encode_args, {[1] = "a"}))
        assert(not pcall(ngx.encode_args, {a = print}))
        local t = ngx.decode_args("a=1&b=2&a=3&flag&empty=&=x&c=%20+d")
        assert(t.a[1] == "1" and t.a[2] == "3" and t.b == "2")
        assert(t.flag == true and t.empty == "" and t[""] == nil and t.c == "  d")
        local t2, err = ngx.decode_args("a=1&b=2&c=3", 2)
        assert(t2.a == "1" and t2.b == "2" and t2.c == nil and err == "truncated")
        t2 = ngx.decode_args("a=1=2&k", 0)
        assert(t2.a == "1=2" and t2.k == true)
        local many = {}
        for i = 1, 150 do many[#many + 1] = "k" .. i .. "=v" end
        local t3, e3 = ngx.decode_args(table.concat(many, "&"))
        assert(t3.k100 == "v" and t3.k101 == nil and e3 == "truncated")
        local round = ngx.decode_args(ngx.encode_args({q = "a b&c", list = {"1", "2"}, on = true}))
        assert(round.q == "a b&c" and round.list[2] == "2" and round.on == true)
    "#);
}

#[test]
fn clocks_and_dates() {
    run(r#"
        local now, t = ngx.now(), ngx.time()
        assert(type(now) == "number" and math.abs(now - t) < 2 and t > 1700000000)
        assert(t == math.floor(t))
        assert(ngx.today():match("^%d%d%d%d%-%d%d%-%d%d$"))
        assert(ngx.utctime():match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$"))
        assert(ngx.localtime():match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$"))
        assert(ngx.update_time() == nil)
        assert(ngx.http_time(1290079655) == "Thu, 18 Nov 2010 11:27:35 GMT")
        assert(ngx.cookie_time(1290079655) == "Thu, 18-Nov-10 11:27:35 GMT")
        assert(ngx.cookie_time(2200000000) == "Sun, 18-Sep-2039 23:06:40 GMT", ngx.cookie_time(2200000000))
        assert(ngx.http_time(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        assert(ngx.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT") == 1290079655)
        assert(ngx.parse_http_time("Thursday, 18-Nov-10 11:27:35 GMT") == 1290079655)
        assert(ngx.parse_http_time("Thu Nov 18 11:27:35 2010") == 1290079655)
        assert(ngx.parse_http_time("garbage") == nil and ngx.parse_http_time("Thu, 31 Feb 2010 11:27:35 GMT") == nil)
        assert(ngx.parse_http_time(ngx.http_time(t)) == t)
        assert(not pcall(ngx.http_time, "x"))
    "#);
}

#[test]
fn constants_config_worker() {
    run(r#"
        assert(ngx.OK == 0 and ngx.ERROR == -1 and ngx.AGAIN == -2 and ngx.DONE == -4 and ngx.DECLINED == -5)
        assert(ngx.HTTP_OK == 200 and ngx.HTTP_CREATED == 201 and ngx.HTTP_NO_CONTENT == 204)
        assert(ngx.HTTP_MOVED_PERMANENTLY == 301 and ngx.HTTP_MOVED_TEMPORARILY == 302 and ngx.HTTP_SEE_OTHER == 303)
        assert(ngx.HTTP_NOT_MODIFIED == 304 and ngx.HTTP_TEMPORARY_REDIRECT == 307 and ngx.HTTP_BAD_REQUEST == 400)
        assert(ngx.HTTP_UNAUTHORIZED == 401 and ngx.HTTP_PAYMENT_REQUIRED == 402 and ngx.HTTP_FORBIDDEN == 403)
        assert(ngx.HTTP_NOT_FOUND == 404 and ngx.HTTP_NOT_ALLOWED == 405 and ngx.HTTP_NOT_ACCEPTABLE == 406)
        assert(ngx.HTTP_REQUEST_TIMEOUT == 408 and ngx.HTTP_CONFLICT == 409 and ngx.HTTP_GONE == 410)
        assert(ngx.HTTP_UPGRADE_REQUIRED == 426 and ngx.HTTP_TOO_MANY_REQUESTS == 429 and ngx.HTTP_CLOSE == 444)
        assert(ngx.HTTP_ILLEGAL == 451 and ngx.HTTP_INTERNAL_SERVER_ERROR == 500)
        assert(ngx.HTTP_METHOD_NOT_IMPLEMENTED == 501 and ngx.HTTP_BAD_GATEWAY == 502)
        assert(ngx.HTTP_SERVICE_UNAVAILABLE == 503 and ngx.HTTP_GATEWAY_TIMEOUT == 504)
        assert(ngx.HTTP_VERSION_NOT_SUPPORTED == 505 and ngx.HTTP_INSUFFICIENT_STORAGE == 507)
        assert(ngx.HTTP_CONTINUE == 100 and ngx.HTTP_SWITCHING_PROTOCOLS == 101)
        assert(ngx.HTTP_GET == 2 and ngx.HTTP_HEAD == 4 and ngx.HTTP_POST == 8 and ngx.HTTP_PUT == 16)
        assert(ngx.HTTP_DELETE == 32 and ngx.HTTP_OPTIONS == 512 and ngx.HTTP_PATCH == 16384 and ngx.HTTP_TRACE == 32768)
        assert(ngx.STDERR == 0 and ngx.EMERG == 1 and ngx.ALERT == 2 and ngx.CRIT == 3 and ngx.ERR == 4)
        assert(ngx.WARN == 5 and ngx.NOTICE == 6 and ngx.INFO == 7 and ngx.DEBUG == 8)
        assert(ngx.null ~= nil and type(ngx.null) == "userdata")
        assert(ngx.config.subsystem == "http" and type(ngx.config.ngx_lua_version) == "number")
        assert(ngx.worker.id() == 0 and ngx.worker.count() == 1 and ngx.worker.pid() > 0)
    "#);
}

#[test]
fn regex_cache_is_bounded() {
    run(r#"
        for i = 1, 1100 do
            assert(ngx.re.find("x" .. i, "x" .. i .. "$", "jo") == 1)
        end
        assert(ngx.re.find("x1", "x1$", "jo") == 1)
    "#);
}

#[test]
fn pcre_translation() {
    use super::pcre::{compile, parse_opts};
    let c = |p: &str, o: &str| compile(p.as_bytes(), parse_opts(o.as_bytes()).unwrap());
    assert!(
        c("a{,3}", "").unwrap().re.is_match(b"a{,3}"),
        "not a quantifier: literal"
    );
    assert!(c("(?>ab|a)c", "").unwrap().re.is_match(b"abc"));
    assert!(c("a++b", "").unwrap().re.is_match(b"aab"));
    assert!(c("(?=x)", "").is_err() && c("(a)\\1", "").is_err() && c("\\G", "").is_err());
    assert_eq!(c("(a)(?<n>b)(?:c)(?'m'd)(?P<o>e)", "").unwrap().ncaps, 4);
    assert!(c("a # comment (\n b", "x").unwrap().re.is_match(b"ab"));
    assert!(c("(?x) a b (?-x: c d)", "").unwrap().re.is_match(b"ab c d"));
    assert!(c(r"\x41\012\cA\e\x{42}", "")
        .unwrap()
        .re
        .is_match(b"A\n\x01\x1bB"));
    assert!(c("[[:digit:]]+", "").unwrap().re.is_match(b"12"));
    assert!(
        c(r"\d", "u").unwrap().re.find("٣".as_bytes()).is_none(),
        "\\d is ASCII, as in PCRE"
    );
    assert!(c(r"[]a]", "").unwrap().re.is_match(b"]"));
    assert!(c(r"[a-c-e]", "").unwrap().re.is_match(b"-"));
    assert!(
        c(r"\p{Lu}", "").unwrap().re.is_match("É".as_bytes()),
        "falls back to UTF-8 mode"
    );
    assert!(c("(?<a>x)(?<a>y)", "").is_err() && c("(?<a>x)(?<a>y)", "D").is_ok());
    let err = c("(", "").err().unwrap();
    assert!(
        err.starts_with("pcre2_compile() failed: ") && err.ends_with(" in \"(\""),
        "{err}"
    );
    assert_eq!(
        parse_opts(b"q").unwrap_err(),
        "unknown flag \"q\" (flags \"q\")"
    );
    assert!(parse_opts(b"ijoxmsaJDdUu").is_ok());
}

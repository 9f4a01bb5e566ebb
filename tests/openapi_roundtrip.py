#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The OpenAPI document an awith app serves, checked from outside
(tests/check_openapi.sh runs this against examples/orders_api):

  - GET /openapi.json validates as OpenAPI 3.1 (openapi-spec-validator,
    which checks it against the specification's own JSON Schema);
  - GET /docs is an HTML page that loads nothing from elsewhere;
  - for every operation, a request is built from the document alone (path
    and query parameters from their schemas, a body from the request
    schema, itself checked against that schema with jsonschema), sent, and
    answered 2xx, its JSON answer valid against the declared response
    schema; then one value is pushed past a declared bound and the answer
    is 422 naming that value's location.

Usage: openapi_roundtrip.py BASE_URL     (prints ok/FAIL lines and a tally)
"""
import copy
import json
import sys
import urllib.error
import urllib.request

try:
    import jsonschema
    from openapi_spec_validator import validate as validate_spec
except ImportError as e:
    # Debian packages no OpenAPI 3.1 validator (openapi-specification has
    # the 3.0 schema only): the machine's Python carries
    # openapi-spec-validator.
    print('FAIL python3 cannot import the validator:', e)
    print('0 passed, 1 failed')
    sys.exit(1)

base = sys.argv[1].rstrip('/')
passed = failed = 0


def ok(name):
    global passed
    passed += 1
    print('ok', name)


def fail(name, why):
    global failed
    failed += 1
    print('FAIL', name + ':', why)


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method.upper())
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


status, headers, raw = call('GET', '/openapi.json')
doc = json.loads(raw)
try:
    validate_spec(doc)
    ok('openapi_json_is_valid_openapi_3_1 (%s, %d paths)' % (doc.get('openapi'), len(doc['paths'])))
except Exception as e:  # the validator's own error types vary by version
    fail('openapi_json_is_valid_openapi_3_1', str(e)[:500])

status, headers, raw = call('GET', '/docs')
page = raw.decode()
if status == 200 and headers.get('Content-Type', '').startswith('text/html') and 'http://' not in page \
        and 'https://' not in page and '/openapi.json' in page:
    ok('docs_page_is_self_contained_html')
else:
    fail('docs_page_is_self_contained_html', '%d %s' % (status, headers.get('Content-Type')))


def deref(s):
    while '$ref' in s:
        s = doc['components']['schemas'][s['$ref'].split('/')[-1]]
    return s


def example(s, depth=0):
    s = deref(s)
    if 'enum' in s:
        return s['enum'][-1]
    t = s.get('type')
    if t == 'string':
        return 'v' * max(s.get('minLength', 1), 1)
    if t in ('integer', 'number'):
        return s.get('minimum', 1)
    if t == 'boolean':
        return True
    if t == 'array':
        return [example(s['items'], depth + 1) for _ in range(max(s.get('minItems', 1), 1))]
    if t == 'object':
        return {k: example(v, depth + 1) for k, v in s.get('properties', {}).items()}
    return None


def schema_check(value, s):
    """value against s, $refs resolved in the document's components."""
    root = dict(copy.deepcopy(s))
    root['components'] = doc['components']
    jsonschema.Draft202012Validator(root).validate(value)


def break_one(s, value, loc):
    """Push one value of `value` (shaped by s) past a declared bound: returns
    (new value, location) or None."""
    s = deref(s)
    t = s.get('type')
    if t in ('integer', 'number') and 'maximum' in s:
        return s['maximum'] + 1, loc
    if t in ('integer', 'number') and 'minimum' in s:
        return s['minimum'] - 1, loc
    if t == 'string' and 'maxLength' in s:
        return 'w' * (s['maxLength'] + 1), loc
    if 'enum' in s:
        return 'not-' + s['enum'][0], loc
    if t == 'object':
        for k, sub in s.get('properties', {}).items():
            r = break_one(sub, value.get(k), loc + [k])
            if r:
                v = dict(value)
                v[k] = r[0]
                return v, r[1]
    if t == 'array' and value:
        r = break_one(s['items'], value[0], loc + [0])
        if r:
            return [r[0]] + value[1:], r[1]
    return None


def build(path, op, params_override=None):
    url, query = path, []
    for p in op.get('parameters', []):
        v = params_override.get(p['name']) if params_override and p['name'] in params_override \
            else example(p['schema'])
        if p['in'] == 'path':
            url = url.replace('{%s}' % p['name'], str(v))
        elif p.get('required') or (params_override and p['name'] in params_override):
            query.append('%s=%s' % (p['name'], v))
    return url + ('?' + '&'.join(query) if query else '')


ops = [(m, p, o) for p, item in doc['paths'].items() for m, o in item.items()]
ops.sort(key=lambda x: x[0] != 'post')  # create first, so that GET /x/{id} finds it
for method, path, op in ops:
    name = '%s %s' % (method.upper(), path)
    body = None
    if 'requestBody' in op:
        bs = op['requestBody']['content']['application/json']['schema']
        body = example(bs)
        try:
            schema_check(body, bs)
        except jsonschema.ValidationError as e:
            fail(name + ' example body', e.message)
            continue
    status, _, raw = call(method, build(path, op), body)
    if not 200 <= status < 300:
        fail(name + ' built from the document', '%d %s' % (status, raw[:300]))
        continue
    codes = [c for c in op['responses'] if c.startswith('2')]
    rs = op['responses'][codes[0]].get('content', {}).get('application/json', {}).get('schema') if codes else None
    if rs:
        try:
            schema_check(json.loads(raw), rs)
        except (jsonschema.ValidationError, ValueError) as e:
            fail(name + ' answer matches its response schema', str(e)[:300])
            continue
    ok('%s_built_from_the_document_answers_%d' % (name, status))

    # one bound broken: 422 at that location
    broken = None
    for p in op.get('parameters', []):
        r = break_one(p['schema'], None, [p['in'], p['name']])
        if r:
            broken = ('param', p['name'], r)
            break
    if not broken and body is not None:
        r = break_one(op['requestBody']['content']['application/json']['schema'], body, ['body'])
        if r:
            broken = ('body', None, r)
    if not broken:
        continue
    kind, pname, (value, loc) = broken
    if kind == 'param':
        status, _, raw = call(method, build(path, op, {pname: value}), body)
    else:
        status, _, raw = call(method, build(path, op), value)
    locs = [d.get('loc') for d in json.loads(raw).get('detail', [])] if status == 422 else []
    if status == 422 and loc in locs:
        ok('%s_with_%s_out_of_bounds_answers_422' % (name, '.'.join(map(str, loc))))
    else:
        fail(name + ' out of bounds', 'expected 422 at %s, got %d %s' % (loc, status, raw[:300]))

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed or not passed else 0)

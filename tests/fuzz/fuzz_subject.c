/* tests/fuzz/fuzz_subject.c -- libFuzzer harness for the subjects of
 * asyncpat/topic.h, against a naive matcher and validator
 *
 * Input: a sequence of subscribe, unsubscribe and publish operations on one
 * bus (32 slots, 24 trie nodes, up to 8 subscriptions of depth 4, OVERWRITE
 * or BLOCK). Subjects and patterns are built from the input: tokens "a",
 * "b", "c", "*", ">", empty tokens, tokens of odd bytes (spaces, controls,
 * '*' or '>' inside a token), tokens over AP_TOPIC_TOKEN_MAX and subjects
 * over AP_TOPIC_SUBJECT_MAX. Checked:
 *   - ap_topic_check, subscribe and publish answer AP_INVAL exactly when
 *     the naive validator (written here from NATS's rules) refuses the
 *     string; a refused subscribe or publish changes nothing (free nodes,
 *     the hash table and published() are as before);
 *   - after each publish every live subscription holds the message iff the
 *     naive matcher matches its pattern with the subject, with the right
 *     bytes and subject; nothing else arrives (drained after each publish,
 *     so BLOCK never fills and nothing drops);
 *   - the trie holds exactly one node per distinct token prefix of the live
 *     patterns (pruning frees the rest), and the table is empty at the end.
 */
#include "asyncpat/topic.h"
#include "fuzz_common.h"

#define NSUB 8
#define NODES 24
#define CAP 32

static int naive_valid(const char *s, int pattern)
{
    size_t n = strlen(s);
    if (n == 0 || n > AP_TOPIC_SUBJECT_MAX)
        return 0;
    const char *t = s;
    for (;;) {
        const char *e = strchr(t, '.');
        size_t len = e ? (size_t)(e - t) : strlen(t);
        if (len == 0 || len > AP_TOPIC_TOKEN_MAX)
            return 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)t[i];
            if (c <= ' ' || c == 0x7f)
                return 0;
            if ((c == '*' || c == '>') && len != 1)
                return 0;
        }
        if (len == 1 && (t[0] == '*' || t[0] == '>')) {
            if (!pattern)
                return 0;
            if (t[0] == '>' && e)
                return 0;
        }
        if (!e)
            return 1;
        t = e + 1;
    }
}

/* NATS matching, token by token (both strings valid) */
static int naive_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pe = strchr(pat, '.'), *se = strchr(subj, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return 1;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || memcmp(pat, subj, pl) != 0))
            return 0;
        if (!pe || !se)
            return !pe && !se;
        pat = pe + 1;
        subj = se + 1;
    }
}

static void gen(fz *f, char *out, size_t cap)
{
    size_t n = 0;
    unsigned ntok = fz_u8(f) % 10;
    static const char odd[] = "ab* >\t.\x7f" "z";
    for (unsigned k = 0; k < ntok || k == 0; k++) {
        if (k > 0 && n + 1 < cap)
            out[n++] = '.';
        uint8_t sel = fz_u8(f);
        const char *tok = NULL;
        char buf[48];
        size_t len = 0;
        switch (sel % 10) {
        case 0: case 1: tok = "a"; break;
        case 2: tok = "b"; break;
        case 3: tok = "c"; break;
        case 4: tok = "*"; break;
        case 5: tok = ">"; break;
        case 6: tok = ""; break; /* an empty token */
        case 7: /* odd bytes */
            len = 1 + fz_u8(f) % 4;
            for (size_t i = 0; i < len; i++)
                buf[i] = odd[fz_u8(f) % (sizeof odd - 1)];
            break;
        case 8: /* around AP_TOPIC_TOKEN_MAX */
            len = AP_TOPIC_TOKEN_MAX - 1 + fz_u8(f) % 3;
            memset(buf, 'a' + sel % 3, len);
            break;
        default: tok = "bb"; break;
        }
        if (tok) {
            len = strlen(tok);
            memcpy(buf, tok, len);
        }
        for (size_t i = 0; i < len && n + 1 < cap; i++)
            out[n++] = buf[i];
    }
    out[n] = '\0';
}

/* distinct token prefixes of the live patterns (what the trie must hold) */
static unsigned prefixes(char pats[][AP_TOPIC_SUBJECT_MAX + 64], const int *live)
{
    static char seen[NSUB * 70][AP_TOPIC_SUBJECT_MAX + 1];
    unsigned ns = 0;
    for (int i = 0; i < NSUB; i++) {
        if (!live[i])
            continue;
        const char *p = pats[i];
        for (size_t j = 0;; j++) {
            if (p[j] == '.' || p[j] == '\0') {
                char pre[AP_TOPIC_SUBJECT_MAX + 1];
                memcpy(pre, p, j);
                pre[j] = '\0';
                unsigned k = 0;
                while (k < ns && strcmp(seen[k], pre) != 0)
                    k++;
                if (k == ns)
                    memcpy(seen[ns++], pre, j + 1);
                if (p[j] == '\0')
                    break;
            }
        }
    }
    return ns;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    static uint64_t mem[AP_TOPIC_BYTES(CAP, 8, NODES) / 8];
    static uint64_t rings[NSUB][AP_TOPIC_SUB_BYTES(4) / 8];
    static ap_topic_sub sub[NSUB];
    static char pats[NSUB][AP_TOPIC_SUBJECT_MAX + 64];
    static uint64_t table[2 * (NODES + 1)];
    int live[NSUB] = {0};
    ap_topic t;
    FZ_CHECK(ap_topic_init(&t, mem, sizeof mem, CAP, 8, NODES) == AP_OK);
    memset(sub, 0, sizeof sub);
    uint64_t msgno = 0;
    for (int ops = 0; fz_more(&f) && ops < 200; ops++) {
        uint8_t op = fz_u8(&f);
        char s[AP_TOPIC_SUBJECT_MAX + 64];
        int k = (op >> 4) % NSUB;
        switch (op % 4) {
        case 0:
        case 1: { /* subscribe */
            if (live[k])
                break;
            gen(&f, s, sizeof s);
            ap_topic_policy pol = (op & 8) ? AP_TOPIC_POLICY_BLOCK : AP_TOPIC_POLICY_OVERWRITE;
            int valid = naive_valid(s, 1);
            FZ_CHECK((ap_topic_check(s, true) == AP_OK) == valid);
            FZ_CHECK(ap_topic_check(s, false) != AP_OK || naive_valid(s, 0));
            uint32_t before = t.nodes_free;
            memcpy(table, t.table, sizeof table);
            ap_status st = ap_topic_subscribe(&t, &sub[k], s, pol, rings[k], sizeof rings[k], 4);
            if (!valid) {
                FZ_CHECK(st == AP_INVAL);
            } else {
                FZ_CHECK(st == AP_OK || st == AP_FULL);
            }
            if (st != AP_OK) {
                FZ_CHECK(t.nodes_free == before && memcmp(table, t.table, sizeof table) == 0);
                FZ_CHECK(sub[k].bus == NULL);
                break;
            }
            live[k] = 1;
            strcpy(pats[k], s);
            break;
        }
        case 2: /* unsubscribe */
            if (live[k]) {
                ap_topic_unsubscribe(&t, &sub[k]);
                live[k] = 0;
            }
            break;
        default: { /* publish, then drain everyone */
            gen(&f, s, sizeof s);
            int valid = naive_valid(s, 0);
            uint64_t v = ++msgno, pub = ap_topic_published(&t);
            ap_status st = ap_topic_try_publish(&t, s, &v);
            if (!valid) {
                FZ_CHECK(st == AP_INVAL && ap_topic_published(&t) == pub);
                msgno--;
            } else {
                FZ_CHECK(st == AP_OK);
            }
            for (int i = 0; i < NSUB; i++) {
                if (!live[i])
                    continue;
                uint64_t got = 0;
                char subj[AP_TOPIC_SUBJECT_MAX + 1];
                ap_status r = ap_topic_sub_try_recv(&sub[i], &got, subj, NULL);
                if (valid && naive_match(pats[i], s)) {
                    FZ_CHECK(r == AP_OK && got == v && strcmp(subj, s) == 0);
                    r = ap_topic_sub_try_recv(&sub[i], &got, subj, NULL);
                }
                FZ_CHECK(r == AP_EMPTY);
            }
            break;
        }
        }
        FZ_CHECK(NODES - t.nodes_free == prefixes(pats, live));
    }
    for (int i = 0; i < NSUB; i++)
        if (live[i])
            ap_topic_unsubscribe(&t, &sub[i]);
    FZ_CHECK(t.nodes_free == NODES && t.pinned == 0);
    for (size_t i = 0; i < t.tsize; i++)
        FZ_CHECK(t.table[i] == 0);
    ap_topic_fini(&t);
    return 0;
}

/*
 * The compiled NodeURL cache index: building it in memory, validating it,
 * and looking keys up in it.  No I/O: the caller provides the memory.
 */
#include "cacheindex.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const char MAGIC[8] = { 'N', 'S', 'C', 'I', 'D', 'X', '\r', '\n' };

enum {
	SLOT_TAG_SHIFT = 24,
	SLOT_INDEX_MASK = (1u << SLOT_TAG_SHIFT) - 1,
	BUCKET_SLOTS = 15,         /* and one check word: a bucket is a 64-byte cache line */
	MIN_BUCKETS = 2,
	PATH_ALIGN = 64,
	RECORDS_ALIGN = NS_INDEX_RECORD_SIZE,
	KIND_ENTRY = 1,
	KIND_BROKEN = 2,
};

struct index_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t record_size;
	uint32_t path_size;      /* bytes of the path area, padded */
	uint64_t bucket_count;
	uint64_t record_count;
	uint64_t broken_count;
	uint64_t total_size;
	uint64_t seed;
	struct ns_file_id source;
	uint64_t problem_lines;  /* reported while compiling, for processes that only map it */
	uint64_t checksum;       /* computed with this field zero */
};

/*
 * One entry in one cache line: what a connect needs and nothing more.  A
 * NodeURL's node id and debounce are not kept; of f, the low 16 bits are
 * (bit 0, TCP Fast Open, is the only one defined).
 */
struct index_record {
	uint8_t addr[16];
	uint16_t port;
	uint8_t family;
	uint8_t kind;
	uint32_t line;
	uint32_t check;          /* checksum of the record with this field zero */
	uint8_t noise_proto;     /* entry */
	uint8_t reason;          /* broken entry: the builder's code for why */
	uint16_t features;       /* entry */
	uint8_t noise_pub[NS_KEY_LEN];
};

/* One cache line of the slot table, checked whenever a lookup reads it. */
struct index_bucket {
	uint32_t slot[BUCKET_SLOTS];
	uint32_t check;
};

_Static_assert(sizeof(struct index_header) <= NS_INDEX_HEADER_SIZE, "header fits");
_Static_assert(sizeof(struct index_bucket) == 64, "a bucket is one cache line");
_Static_assert(sizeof(struct index_record) == NS_INDEX_RECORD_SIZE, "record size");

static const uint8_t V4_MAPPED_PREFIX[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Fill *k for an address; an IPv4-mapped IPv6 address gets its IPv4 key. */
void ns_index_make_key(struct ns_index_key *k, enum ns_addr_family family, const uint8_t *addr,
                       uint16_t port)
{
	memset(k, 0, sizeof *k);
	if (family == NS_ADDR_IPV6 && memcmp(addr, V4_MAPPED_PREFIX, sizeof V4_MAPPED_PREFIX) == 0) {
		family = NS_ADDR_IPV4;
		addr += sizeof V4_MAPPED_PREFIX;
	}
	k->family = (uint8_t)family;
	memcpy(k->addr, addr, family == NS_ADDR_IPV4 ? 4 : 16);
	k->port = port;
}

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t rotl64(uint64_t v, unsigned n)
{
	return (v << n) | (v >> (64 - n));
}

/* A 64-bit finaliser with full avalanche (every input bit moves every output bit). */
static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The key's hash under the index's seed; the seed makes crafted collisions a guess. */
static uint64_t key_hash(const struct ns_index_key *k, uint64_t seed)
{
	uint64_t h = mix64(seed ^ load64(k->addr));

	h = mix64(h ^ load64(k->addr + 8));
	return mix64(h ^ ((uint64_t)k->port << 8 | k->family));
}

/*
 * Checksum over blocks of 32 bytes, four independent lanes.  It detects
 * accidents (truncation, a stray write, a half-written file), not forgery:
 * who can write the index can write the text file too.
 */
struct sum_state {
	uint64_t lane[4];
	uint64_t len;
};

static const uint64_t SUM_P1 = 0x9e3779b185ebca87ULL, SUM_P2 = 0xc2b2ae3d27d4eb4fULL;

static void sum_init(struct sum_state *s, uint64_t seed)
{
	s->lane[0] = seed + SUM_P1;
	s->lane[1] = seed ^ SUM_P2;
	s->lane[2] = seed - SUM_P1;
	s->lane[3] = seed * SUM_P2 + 1;
	s->len = 0;
}

/* Add len bytes, a multiple of 32. */
static void sum_update(struct sum_state *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t off = 0; off + 32 <= len; off += 32)
		for (unsigned i = 0; i < 4; i++)
			s->lane[i] = rotl64(s->lane[i] + load64(p + off + 8 * i) * SUM_P2, 31) * SUM_P1;
	s->len += len;
}

static uint64_t sum_final(const struct sum_state *s)
{
	return mix64(rotl64(s->lane[0], 1) + rotl64(s->lane[1], 7) + rotl64(s->lane[2], 12) +
	             rotl64(s->lane[3], 18) + s->len);
}

/* The header checksum: the header with its checksum field zero, then the path. */
static uint64_t index_checksum(const void *mem)
{
	const struct index_header *h = mem;
	uint8_t head[NS_INDEX_HEADER_SIZE];
	struct index_header zeroed = *h;
	struct sum_state s;

	zeroed.checksum = 0;
	memcpy(head, mem, sizeof head);
	memcpy(head, &zeroed, sizeof zeroed);
	sum_init(&s, h->seed);
	sum_update(&s, head, sizeof head);
	sum_update(&s, (const uint8_t *)mem + sizeof head, h->path_size);
	return sum_final(&s);
}

static size_t path_area_size(const char *path)
{
	return (strlen(path) + 1 + PATH_ALIGN - 1) / PATH_ALIGN * PATH_ALIGN;
}

static uint64_t buckets_for(size_t max_entries)
{
	uint64_t n = MIN_BUCKETS;

	/* At most half full: a bucket is almost never full, so a miss reads one cache line. */
	while (n * BUCKET_SLOTS < 2 * (uint64_t)max_entries)
		n *= 2;
	return n;
}

static size_t align_up(size_t v, size_t to)
{
	return (v + to - 1) / to * to;
}

static size_t records_offset(uint64_t bucket_count, size_t path_size)
{
	return align_up(NS_INDEX_HEADER_SIZE + path_size + bucket_count * sizeof(struct index_bucket),
	                RECORDS_ALIGN);
}

/* Bytes a build of at most max_entries entries from source path may need. */
size_t ns_index_max_size(size_t max_entries, const char *path)
{
	return records_offset(buckets_for(max_entries), path_area_size(path)) +
	       max_entries * NS_INDEX_RECORD_SIZE;
}

static struct index_header *header_of(const void *mem)
{
	return (struct index_header *)mem;
}

static struct index_bucket *buckets_of(const void *mem)
{
	const struct index_header *h = mem;

	/* The path area is a multiple of 64 bytes, so buckets sit on cache lines. */
	return (struct index_bucket *)((uint8_t *)mem + NS_INDEX_HEADER_SIZE + h->path_size);
}

static struct index_record *records_of(const void *mem)
{
	const struct index_header *h = mem;

	return (struct index_record *)((uint8_t *)mem + records_offset(h->bucket_count, h->path_size));
}

/* A bucket's checksum binds it to its position, like a record's. */
static uint32_t bucket_check(const struct index_bucket *bucket, uint64_t seed, uint64_t index)
{
	struct index_bucket copy = *bucket;
	struct sum_state s;

	copy.check = 0;
	sum_init(&s, seed ^ mix64(~index));
	sum_update(&s, &copy, sizeof copy);
	return (uint32_t)sum_final(&s);
}

/* A record's checksum binds it to its position, so a record copied elsewhere fails. */
static uint32_t record_check(const struct index_record *r, uint64_t seed, uint64_t index)
{
	struct index_record copy = *r;
	struct sum_state s;

	copy.check = 0;
	sum_init(&s, seed ^ mix64(index + 1));
	sum_update(&s, &copy, sizeof copy);
	return (uint32_t)sum_final(&s);
}

/*
 * Start an index of at most max_entries in mem (cap bytes, zeroed, at least
 * ns_index_max_size), for the text file path whose identity is *src.
 * -1 if max_entries or path is too big.
 */
int ns_index_begin(struct ns_index_builder *b, void *mem, size_t cap, size_t max_entries,
                   const char *path, const struct ns_file_id *src, uint64_t seed)
{
	struct index_header *h = mem;

	if (max_entries > NS_INDEX_MAX_ENTRIES || strlen(path) >= NS_INDEX_PATH_MAX ||
	    cap < ns_index_max_size(max_entries, path))
		return -1;
	memset(b, 0, sizeof *b);
	b->base = mem;
	b->cap = cap;
	b->bucket_count = buckets_for(max_entries);
	b->seed = seed;
	memcpy(h->magic, MAGIC, sizeof MAGIC);
	h->version = NS_INDEX_VERSION;
	h->header_size = NS_INDEX_HEADER_SIZE;
	h->record_size = NS_INDEX_RECORD_SIZE;
	h->path_size = (uint32_t)path_area_size(path);
	h->bucket_count = b->bucket_count;
	h->seed = seed;
	h->source = *src;
	memcpy((char *)mem + NS_INDEX_HEADER_SIZE, path, strlen(path) + 1);
	b->records_offset = records_offset(b->bucket_count, h->path_size);
	return 0;
}

static unsigned slot_tag(uint64_t hash)
{
	return (unsigned)(hash >> 56) | 1; /* never 0, so an occupied slot is never 0 */
}

static int record_matches(const struct index_record *r, const struct ns_index_key *k)
{
	return r->family == k->family && r->port == k->port &&
	       memcmp(r->addr, k->addr, sizeof r->addr) == 0;
}

static void fill_record(struct index_record *r, const struct ns_index_key *k,
                        const struct ns_nodeurl *u, unsigned line, uint8_t reason)
{
	memcpy(r->addr, k->addr, sizeof r->addr);
	r->port = k->port;
	r->family = k->family;
	r->line = line;
	if (reason != 0) {
		r->kind = KIND_BROKEN;
		r->reason = reason;
		return;
	}
	r->kind = KIND_ENTRY;
	r->features = (uint16_t)u->features;
	r->noise_proto = (uint8_t)u->noise_proto;
	memcpy(r->noise_pub, u->noise_pub, sizeof r->noise_pub);
}

/*
 * Add an entry, or (reason != 0, the caller's code for why) a broken entry
 * for u's address and port only.  Returns 0 if added, else the line number
 * of the earlier entry with the same key (which is kept); -1 if the
 * builder is full.
 */
long ns_index_add(struct ns_index_builder *b, const struct ns_nodeurl *u, unsigned line,
                  uint8_t reason)
{
	struct index_record *records = (struct index_record *)(b->base + b->records_offset);
	struct index_bucket *buckets = buckets_of(b->base), *bucket;
	struct ns_index_key key;
	uint64_t hash, mask = b->bucket_count - 1, i;
	uint32_t *free_slot = NULL;
	unsigned tag;

	ns_index_make_key(&key, u->family, u->addr, u->port);
	hash = key_hash(&key, b->seed);
	tag = slot_tag(hash);
	for (i = hash & mask; free_slot == NULL; i = (i + 1) & mask) {
		bucket = &buckets[i];
		for (unsigned j = 0; j < BUCKET_SLOTS; j++) {
			uint32_t slot = bucket->slot[j];

			if (slot == 0) {
				free_slot = &bucket->slot[j];
				break;
			}
			if (slot >> SLOT_TAG_SHIFT == tag &&
			    record_matches(&records[(slot & SLOT_INDEX_MASK) - 1], &key))
				return records[(slot & SLOT_INDEX_MASK) - 1].line;
		}
	}
	if (b->record_count + 1 > NS_INDEX_MAX_ENTRIES ||
	    2 * (b->record_count + 1) > b->bucket_count * BUCKET_SLOTS ||
	    b->records_offset + (b->record_count + 1) * NS_INDEX_RECORD_SIZE > b->cap)
		return -1;
	fill_record(&records[b->record_count], &key, u, line, reason);
	records[b->record_count].check = record_check(&records[b->record_count], b->seed,
	                                              b->record_count);
	b->record_count++;
	if (reason != 0)
		b->broken_count++;
	*free_slot = (uint32_t)tag << SLOT_TAG_SHIFT | (uint32_t)b->record_count;
	return 0;
}

/* Write the header (with how many lines had problems) and checksum; returns the size in bytes. */
size_t ns_index_finish(struct ns_index_builder *b, uint64_t problem_lines)
{
	struct index_header *h = header_of(b->base);

	h->problem_lines = problem_lines;
	for (uint64_t i = 0; i < b->bucket_count; i++)
		buckets_of(b->base)[i].check = bucket_check(&buckets_of(b->base)[i], b->seed, i);
	h->record_count = b->record_count;
	h->broken_count = b->broken_count;
	h->total_size = b->records_offset + b->record_count * NS_INDEX_RECORD_SIZE;
	h->checksum = index_checksum(b->base);
	return h->total_size;
}

/* The header's own fields, and that len bytes are exactly what they describe. */
static const char *check_header(const struct index_header *h, size_t len)
{
	if (len < NS_INDEX_HEADER_SIZE)
		return "shorter than its header";
	if (memcmp(h->magic, MAGIC, sizeof MAGIC) != 0)
		return "not a noiseshim cache index (bad magic)";
	if (h->version != NS_INDEX_VERSION)
		return "written by another version of noiseshim";
	if (h->header_size != NS_INDEX_HEADER_SIZE || h->record_size != NS_INDEX_RECORD_SIZE)
		return "header or record size does not match this version";
	if (h->path_size == 0 || h->path_size % PATH_ALIGN != 0 || h->path_size > NS_INDEX_PATH_MAX)
		return "bad path size";
	if (h->bucket_count < MIN_BUCKETS || (h->bucket_count & (h->bucket_count - 1)) != 0 ||
	    h->bucket_count > buckets_for(NS_INDEX_MAX_ENTRIES))
		return "bad bucket count";
	if (h->record_count > NS_INDEX_MAX_ENTRIES ||
	    2 * h->record_count > h->bucket_count * BUCKET_SLOTS ||
	    h->broken_count > h->record_count)
		return "bad record count";
	if (h->total_size != records_offset(h->bucket_count, h->path_size) +
	                             h->record_count * NS_INDEX_RECORD_SIZE)
		return "sizes in the header do not add up";
	if (h->total_size != len)
		return len < h->total_size ? "truncated" : "longer than its header says";
	return NULL;
}

/* Check the header of the index held in len bytes of mem; NULL if valid, else why not. */
const char *ns_index_validate(const void *mem, size_t len)
{
	const struct index_header *h = mem;
	const char *problem = check_header(h, len);

	if (problem != NULL)
		return problem;
	if (memchr((const char *)mem + NS_INDEX_HEADER_SIZE, '\0', h->path_size) == NULL)
		return "source path is not terminated";
	if (index_checksum(mem) != h->checksum)
		return "checksum mismatch";
	return NULL;
}

/* The text file's identity and path recorded in a valid index. */
void ns_index_source(const void *mem, struct ns_file_id *src, const char **path)
{
	*src = header_of(mem)->source;
	*path = (const char *)mem + NS_INDEX_HEADER_SIZE;
}

/* Counts in a valid index: entries, broken entries, lines that were reported. */
size_t ns_index_entry_count(const void *mem)
{
	const struct index_header *h = mem;

	return h->record_count - h->broken_count;
}

size_t ns_index_broken_count(const void *mem)
{
	return header_of(mem)->broken_count;
}

uint64_t ns_index_problem_count(const void *mem)
{
	return header_of(mem)->problem_lines;
}

static void record_to_nodeurl(const struct index_record *r, struct ns_nodeurl *u)
{
	memset(u, 0, sizeof *u);
	u->family = (enum ns_addr_family)r->family;
	memcpy(u->addr, r->addr, sizeof u->addr);
	u->port = r->port;
	/* Entries hold IP addresses only, so the host text is the address's own form. */
	inet_ntop(u->family == NS_ADDR_IPV4 ? AF_INET : AF_INET6, r->addr, u->host, sizeof u->host);
	u->has_features = r->features != 0;
	u->features = r->features;
	u->noise_proto = r->noise_proto;
	u->has_noise_pub = 1;
	memcpy(u->noise_pub, r->noise_pub, sizeof u->noise_pub);
}

/*
 * Find key in a valid index.  On a hit *u is the entry and *line its line;
 * on a broken entry *line and *reason (the code it was added with) say why;
 * a bucket or record that fails its checksum makes it CORRUPT.
 */
enum ns_index_result ns_index_lookup(const void *mem, const struct ns_index_key *key,
                                     struct ns_nodeurl *u, unsigned *line, uint8_t *reason)
{
	const struct index_header *h = mem;
	const struct index_bucket *buckets = buckets_of(mem), *bucket;
	const struct index_record *records = records_of(mem), *r;
	uint64_t hash = key_hash(key, h->seed), mask = h->bucket_count - 1, i, probes;
	uint32_t index;
	unsigned tag = slot_tag(hash);

	/* Validation bounded the fill to one half, so an empty slot is always found. */
	for (i = hash & mask, probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
		bucket = &buckets[i];
		/* A damaged bucket could hide an entry: that must not read as a miss. */
		if (bucket->check != bucket_check(bucket, h->seed, i))
			return NS_INDEX_CORRUPT;
		for (unsigned j = 0; j < BUCKET_SLOTS; j++) {
			uint32_t slot = bucket->slot[j];

			if (slot == 0)
				return NS_INDEX_MISS;
			if (slot >> SLOT_TAG_SHIFT != tag)
				continue;
			index = (slot & SLOT_INDEX_MASK) - 1;
			if (index >= h->record_count)
				return NS_INDEX_CORRUPT;
			r = &records[index];
			if (r->check != record_check(r, h->seed, index))
				return NS_INDEX_CORRUPT;
			if (!record_matches(r, key))
				continue;
			*line = r->line;
			if (r->kind == KIND_BROKEN) {
				*reason = r->reason;
				return NS_INDEX_BROKEN;
			}
			if (r->kind != KIND_ENTRY)
				return NS_INDEX_CORRUPT;
			record_to_nodeurl(r, u);
			return NS_INDEX_HIT;
		}
	}
	return NS_INDEX_CORRUPT;
}

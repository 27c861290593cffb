/*
 * ELF headers as the dynamic loader sees them.  Files for this machine are
 * read with the native structures; anything else is only identified.
 */
#include "elfinfo.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	/* Far more than any linker writes: bounds the work on a damaged file. */
	TABLE_ENTRIES_MAX = 1 << 20,
	SECTION_NAMES_MAX = 1 << 20,
	E_MACHINE_OFFSET = EI_NIDENT + 2, /* after e_ident and e_type, in both classes */
};

static const char *const GO_SECTIONS[] = { ".note.go.buildid", ".go.buildinfo" };

/* The table sizes, which move to the first section header when the ELF header cannot hold them. */
struct table_sizes {
	size_t segments;
	size_t sections;
	size_t names_section;
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Read exactly len bytes at off.  -1 with errno set, 0 for a file that ends first. */
static int read_at(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* Why a read of path failed, for err. */
static void read_failed(const char *path, char *err, size_t errlen)
{
	if (errno == 0)
		set_err(err, errlen, "%s: damaged ELF file: its headers point past its end", path);
	else
		set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
}

/* Whether the len bytes at head begin with the ELF magic number. */
int elf_has_magic(const unsigned char *head, size_t len)
{
	return len >= SELFMAG && memcmp(head, ELFMAG, SELFMAG) == 0;
}

/* e_ident and e_machine of the file open on fd, as raw bytes. */
static int read_identity(int fd, unsigned char ident[EI_NIDENT], uint16_t *machine)
{
	if (read_at(fd, ident, EI_NIDENT, 0) < 0)
		return -1;
	return read_at(fd, machine, sizeof *machine, E_MACHINE_OFFSET);
}

/*
 * Compare the file's identity with this noiseshim's own: the shims are
 * built by the same compiler, and ld.so skips a preloaded object of
 * another class or machine.
 */
static int check_native(int fd, const char *path, struct elf_info *info, char *err,
                        size_t errlen)
{
	unsigned char ident[EI_NIDENT], native_ident[EI_NIDENT];
	uint16_t machine, native_machine;
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), failed;

	if (self < 0) {
		set_err(err, errlen, "cannot read /proc/self/exe to learn this machine's ELF type: %s",
		        strerror(errno));
		return -1;
	}
	failed = read_identity(self, native_ident, &native_machine);
	close(self);
	if (failed < 0) {
		set_err(err, errlen, "cannot read /proc/self/exe to learn this machine's ELF type");
		return -1;
	}
	if (read_identity(fd, ident, &machine) < 0) {
		read_failed(path, err, errlen);
		return -1;
	}
	info->elf_class = ident[EI_CLASS];
	info->foreign = ident[EI_CLASS] != native_ident[EI_CLASS] ||
	                ident[EI_DATA] != native_ident[EI_DATA] || machine != native_machine;
	return 0;
}

static int read_section(int fd, const ElfW(Ehdr) *h, size_t i, ElfW(Shdr) *s)
{
	return read_at(fd, s, sizeof *s, (off_t)(h->e_shoff + i * sizeof *s));
}

static int read_table_sizes(int fd, const ElfW(Ehdr) *h, struct table_sizes *t)
{
	ElfW(Shdr) first;

	t->segments = h->e_phnum;
	t->sections = h->e_shoff == 0 ? 0 : h->e_shnum;
	t->names_section = h->e_shstrndx;
	if (h->e_shoff == 0 ||
	    (h->e_phnum != PN_XNUM && h->e_shnum != 0 && h->e_shstrndx != SHN_XINDEX))
		return 0;
	if (read_section(fd, h, 0, &first) < 0)
		return -1;
	if (h->e_phnum == PN_XNUM)
		t->segments = first.sh_info;
	if (h->e_shnum == 0)
		t->sections = first.sh_size;
	if (h->e_shstrndx == SHN_XINDEX)
		t->names_section = first.sh_link;
	return 0;
}

/* Fill info's loader from the PT_INTERP segment, if there is one. */
static int read_interp(int fd, const ElfW(Ehdr) *h, size_t segments, struct elf_info *info)
{
	for (size_t i = 0; i < segments; i++) {
		ElfW(Phdr) p;
		size_t len;

		if (read_at(fd, &p, sizeof p, (off_t)(h->e_phoff + i * sizeof p)) < 0)
			return -1;
		if (p.p_type != PT_INTERP)
			continue;
		len = p.p_filesz < sizeof info->interp ? p.p_filesz : sizeof info->interp - 1;
		if (read_at(fd, info->interp, len, (off_t)p.p_offset) < 0)
			return -1;
		info->interp[len] = '\0';
		info->has_interp = 1;
		return 0;
	}
	return 0;
}

static int is_go_section(const char *name)
{
	for (size_t i = 0; i < sizeof GO_SECTIONS / sizeof GO_SECTIONS[0]; i++)
		if (strcmp(name, GO_SECTIONS[i]) == 0)
			return 1;
	return 0;
}

/* Set info->go if a section carries the Go toolchain's build id or build info. */
static int find_go_sections(int fd, const ElfW(Ehdr) *h, const struct table_sizes *t,
                            struct elf_info *info)
{
	ElfW(Shdr) names, s;
	size_t size;
	char *text;
	int failed = 0;

	if (t->names_section >= t->sections)
		return 0;
	if (read_section(fd, h, t->names_section, &names) < 0)
		return -1;
	size = names.sh_size < SECTION_NAMES_MAX ? names.sh_size : SECTION_NAMES_MAX;
	text = malloc(size + 1);
	if (text == NULL)
		return -1;
	if (read_at(fd, text, size, (off_t)names.sh_offset) < 0) {
		free(text);
		return -1;
	}
	text[size] = '\0';
	for (size_t i = 0; i < t->sections && !info->go; i++) {
		if (read_section(fd, h, i, &s) < 0) {
			failed = -1;
			break;
		}
		info->go = s.sh_name < size && is_go_section(text + s.sh_name);
	}
	free(text);
	return failed;
}

/*
 * Read the headers of the ELF file open on fd, named path.  -1 with the
 * reason, naming path, in err.
 */
int elf_inspect(int fd, const char *path, struct elf_info *info, char *err, size_t errlen)
{
	struct table_sizes t;
	ElfW(Ehdr) h;

	*info = (struct elf_info){ 0 };
	if (check_native(fd, path, info, err, errlen) < 0)
		return -1;
	if (info->foreign)
		return 0;
	if (read_at(fd, &h, sizeof h, 0) < 0 || read_table_sizes(fd, &h, &t) < 0) {
		read_failed(path, err, errlen);
		return -1;
	}
	info->type = h.e_type;
	if ((t.segments > 0 && h.e_phentsize != sizeof(ElfW(Phdr))) ||
	    (t.sections > 0 && h.e_shentsize != sizeof(ElfW(Shdr))) ||
	    t.segments > TABLE_ENTRIES_MAX || t.sections > TABLE_ENTRIES_MAX) {
		set_err(err, errlen, "%s: damaged ELF file: implausible header tables", path);
		return -1;
	}
	if (read_interp(fd, &h, t.segments, info) < 0 || find_go_sections(fd, &h, &t, info) < 0) {
		read_failed(path, err, errlen);
		return -1;
	}
	return 0;
}

/*
 * What the dynamic loader, and so LD_PRELOAD, cares about in an ELF
 * executable: its machine, its loader (PT_INTERP) and whether Go built it.
 */
#ifndef NOISESHIM_CLI_ELFINFO_H
#define NOISESHIM_CLI_ELFINFO_H

#include <limits.h>
#include <stddef.h>

struct elf_info {
	int foreign;           /* class, byte order or machine differ from this noiseshim's */
	unsigned elf_class;    /* ELFCLASS32 or ELFCLASS64 */
	unsigned type;         /* e_type: ET_EXEC, ET_DYN... (native files only) */
	int has_interp;
	char interp[PATH_MAX]; /* the dynamic loader named by PT_INTERP */
	int go;                /* has a .note.go.buildid or .go.buildinfo section */
};

/* Whether the len bytes at head begin with the ELF magic number. */
int elf_has_magic(const unsigned char *head, size_t len);

/*
 * Read the headers of the ELF file open on fd, named path.  -1 with the
 * reason, naming path, in err.
 */
int elf_inspect(int fd, const char *path, struct elf_info *info, char *err, size_t errlen);

#endif

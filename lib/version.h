/*
 * The noiseshim release: the one place its version is defined.  The
 * command prints it for --version; the shims name it in their first log
 * line.  MAJOR.MINOR.PATCH, bumped on release.
 */
#ifndef NOISESHIM_VERSION_H
#define NOISESHIM_VERSION_H

#define NS_VERSION "0.1.0"

#endif

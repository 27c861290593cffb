/*
 * How a lib/ module that runs inside a server (the accept shim, the server
 * proxy) tells that server's log a line: the module formats one line, with
 * no prefix and no newline, and the server writes it where its lines go.
 * The module never writes to a file descriptor of its own.
 */
#ifndef NOISESHIM_LOGLINE_H
#define NOISESHIM_LOGLINE_H

enum ns_line_level {
	NS_LINE_ERROR,  /* something an operator must see at the default level */
	NS_LINE_WARN,   /* a condition the server handles on its own, such as load */
	NS_LINE_INFO,   /* what was loaded or changed, for a verbose log */
};

typedef void ns_line_fn(enum ns_line_level level, const char *line);

#endif

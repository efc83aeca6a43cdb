/*
 * tls — the fake's certificates: a throw-away CA, the server certificate it
 * signs for 127.0.0.1 and localhost, and the app certificate that clients
 * use for certificate (client assertion) sign-in.
 *
 * `--tls-self-signed DIR` calls cg_fa_tls_self_signed(), which writes
 * DIR/ca.pem (what clients trust), DIR/server.pem and DIR/server.key, then
 * builds the server's SSL_CTX from them. Keys are new on every start, so no
 * key material is ever checked in.
 */
#ifndef CG_FA_TLS_H
#define CG_FA_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Writes a fresh CA and server certificate into dir (created if missing)
 * and returns a server SSL_CTX using them, or NULL with errbuf set. The
 * certificate names 127.0.0.1, ::1 and localhost, plus names (comma-separated
 * host names, or NULL): a fixed host a client insists on, reached through a
 * loopback proxy (`--tls-name`). */
SSL_CTX *cg_fa_tls_self_signed(const char *dir, const char *names, char *errbuf,
                               size_t errsz);

/* A server SSL_CTX from existing PEM files. */
SSL_CTX *cg_fa_tls_ctx(const char *cert_file, const char *key_file,
                       char *errbuf, size_t errsz);

/*
 * Writes a self-signed RSA-2048 certificate (CN = cn) and its key as
 * cert_file and key_file, the way an operator registers an app
 * certificate. Returns 0 or CG_EIO.
 */
int cg_fa_tls_app_cert(const char *cert_file, const char *key_file,
                       const char *cn, char *errbuf, size_t errsz);

#endif

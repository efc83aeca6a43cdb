#include "tls.h"

#include "err.h"
#include "mem.h"

#include <stdbool.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERT_DAYS 30

static int tls_err(char *errbuf, size_t errsz, const char *what)
{
    unsigned long e = ERR_get_error();
    char ossl[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, ossl, sizeof(ossl));
    ERR_clear_error();
    return cg_err_set(errbuf, errsz, CG_EIO, "%s: %s", what, ossl);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* A certificate for key, signed by issuer_key (issuer NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                       EVP_PKEY *issuer_key, int kind, const char *san)
{
    X509 *cert = X509_new();
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), (long)CERT_DAYS * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               (const unsigned char *)"contactguard fake", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : cert;
    int rc = add_ext(cert, iss, NID_subject_key_identifier, "hash");
    rc |= add_ext(cert, iss, NID_authority_key_identifier, "keyid:always");
    if (kind == 0) { /* CA */
        rc |= add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE");
        rc |= add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else if (kind == 1) { /* server */
        rc |= add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE");
        rc |= add_ext(cert, iss, NID_key_usage,
                      "critical,digitalSignature,keyEncipherment");
        rc |= add_ext(cert, iss, NID_ext_key_usage, "serverAuth");
        rc |= add_ext(cert, iss, NID_subject_alt_name, san);
    } else { /* app certificate for client assertions */
        rc |= add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE");
        rc |= add_ext(cert, iss, NID_key_usage, "critical,digitalSignature");
    }
    if (rc || !X509_sign(cert, issuer_key, EVP_sha256())) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, cert);
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

SSL_CTX *cg_fa_tls_ctx(const char *cert_file, const char *key_file,
                       char *errbuf, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_err(errbuf, errsz, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        tls_err(errbuf, errsz, cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The server certificate's subjectAltName: loopback, plus each of names
 * (comma-separated host names), or NULL when a name is not a host name. */
static char *server_san(const char *names)
{
    const char *base = "IP:127.0.0.1,DNS:localhost,IP:::1";
    if (names && !*names)
        return NULL;
    struct cg_buf b;
    cg_buf_init(&b, 64 * 1024);
    cg_buf_puts(&b, base);
    for (const char *p = names; p && *p;) {
        size_t n = strcspn(p, ",");
        bool ok = n > 0 && n < 254 && p[0] != '-' && p[0] != '.';
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)p[i]) || p[i] == '-' || p[i] == '.';
        if (!ok) {
            cg_buf_free(&b);
            return NULL;
        }
        cg_buf_printf(&b, ",DNS:%.*s", (int)n, p);
        p += n;
        if (*p == ',')
            p++;
    }
    return cg_buf_take(&b);
}

SSL_CTX *cg_fa_tls_self_signed(const char *dir, const char *names, char *errbuf,
                               size_t errsz)
{
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    X509 *ca = NULL, *srv = NULL;
    SSL_CTX *ctx = NULL;
    char *ca_path = cg_asprintf("%s/ca.pem", dir);
    char *crt_path = cg_asprintf("%s/server.pem", dir);
    char *key_path = cg_asprintf("%s/server.key", dir);
    char *san = server_san(names);

    if (!san) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "--tls-name '%s': not host names",
                   names);
        goto out;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        cg_err_set(errbuf, errsz, CG_EIO, "cannot create %s: %s", dir,
                   strerror(errno));
        goto out;
    }
    /* P-256 keys: generated in milliseconds, accepted by every client. */
    ca_key = EVP_EC_gen("P-256");
    srv_key = EVP_EC_gen("P-256");
    if (!ca_key || !srv_key) {
        tls_err(errbuf, errsz, "key generation");
        goto out;
    }
    ca = make_cert(ca_key, "contactguard fake Azure CA", NULL, ca_key, 0, NULL);
    srv = ca ? make_cert(srv_key, "localhost", ca, ca_key, 1, san) : NULL;
    if (!srv) {
        tls_err(errbuf, errsz, "certificate");
        goto out;
    }
    if (write_pem(ca_path, ca, NULL) < 0 || write_pem(crt_path, srv, NULL) ||
        write_pem(key_path, NULL, srv_key) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "cannot write certificates in %s",
                   dir);
        goto out;
    }
    ctx = cg_fa_tls_ctx(crt_path, key_path, errbuf, errsz);
out:
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    X509_free(ca);
    X509_free(srv);
    free(ca_path);
    free(crt_path);
    free(key_path);
    free(san);
    return ctx;
}

int cg_fa_tls_app_cert(const char *cert_file, const char *key_file,
                       const char *cn, char *errbuf, size_t errsz)
{
    int rc = 0;
    X509 *cert = NULL;
    EVP_PKEY *key = EVP_RSA_gen(2048);
    if (!key) {
        rc = tls_err(errbuf, errsz, "RSA key generation");
        goto out;
    }
    cert = make_cert(key, cn, NULL, key, 2, NULL);
    if (!cert) {
        rc = tls_err(errbuf, errsz, "app certificate");
        goto out;
    }
    if (write_pem(cert_file, cert, NULL) < 0 ||
        write_pem(key_file, NULL, key) < 0)
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s or %s",
                        cert_file, key_file);
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

//! Sign-in with a directory: Debian's `slapd`, started here with a seeded directory (people,
//! groups, a disabled account, a user name full of LDAP filter metacharacters) behind
//! StartTLS with a test certificate. Needs `slapd`, `ldapadd` and `openssl` (`.ci/run`
//! installs slapd and ldap-utils); without them the test is skipped with a notice, except
//! under `CI=true`, where it fails.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::ws::Ws;

crate::on_every_backend!(directory_accounts_sign_in_and_their_groups_grant_roles_live);

const ADMIN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PASSWORD: &str = "directory-admin-secret";
const EDITORS: &str = "cn=acme-editors,ou=groups,dc=example,dc=com";
/// A user name with every character a filter gives meaning to.
const WEIRD: &str = "w*(x)\\y";

struct Slapd {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ldap(dir: &Path, url: &str, tool: &str, ldif: &str) {
    let file = dir.join(format!("{tool}-{}.ldif", stoa::auth::random_hex(4)));
    std::fs::write(&file, ldif).unwrap();
    run(Command::new(tool)
        .args(["-x", "-H", url, "-D", ADMIN, "-w", ADMIN_PASSWORD, "-f"])
        .arg(&file));
}

fn start_slapd() -> Option<Slapd> {
    for tool in ["slapd", "ldapadd", "openssl"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let msg = format!("the directory test needs {tool} (apt-get install slapd ldap-utils)");
            if crate::common::binary::ci() {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("db")).unwrap();
    // A CA and a certificate for 127.0.0.1, made here.
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Stoa test CA",
        ])
        .arg("-keyout")
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(d.join("server.key"))
        .arg("-out")
        .arg(d.join("server.csr")));
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(d.join("server.csr"))
        .arg("-CA")
        .arg(d.join("ca.pem"))
        .arg("-CAkey")
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(d.join("server.pem"))
        .arg("-extfile")
        .arg(d.join("ext.cnf")));
    let conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         pidfile {p}/slapd.pid\n\
         TLSCACertificateFile {p}/ca.pem\nTLSCertificateFile {p}/server.pem\n\
         TLSCertificateKeyFile {p}/server.key\n\
         database mdb\ndirectory {p}/db\nsuffix \"dc=example,dc=com\"\n\
         rootdn \"{ADMIN}\"\nrootpw {ADMIN_PASSWORD}\n\
         access to attrs=userPassword by self read by anonymous auth by * none\n\
         access to * by * read\n",
        p = d.display()
    );
    std::fs::write(d.join("slapd.conf"), conf).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("ldap://127.0.0.1:{port}");
    let slapd_bin = if Path::new("/usr/sbin/slapd").exists() {
        "/usr/sbin/slapd"
    } else {
        "slapd"
    };
    let child = Command::new(slapd_bin)
        .arg("-f")
        .arg(d.join("slapd.conf"))
        .args(["-h", &format!("{url}/"), "-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slapd starts");
    let slapd = Slapd { child, url, dir };
    // Listening once a connection is taken (slapd says nothing else when it is ready).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "slapd did not listen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let people = format!(
        "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,dc=example,dc=com\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: uid=ada,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: ada\ncn: Ada Lovelace\nsn: Lovelace\nmail: ada@corp.example\nuserPassword: ada-directory-password\n\n\
         dn: uid=bob,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob Brown\nsn: Brown\nmail: bob@corp.example\nemployeeType: disabled\nuserPassword: bob-directory-password\n\n\
         dn: uid={weird_dn},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: {WEIRD}\ncn: Wendy Weird\nsn: Weird\nmail: wendy@corp.example\nuserPassword: wendy-directory-password\n\n\
         dn: {EDITORS}\nobjectClass: groupOfNames\ncn: acme-editors\nmember: uid=ada,ou=people,dc=example,dc=com\nmember: uid={weird_dn},ou=people,dc=example,dc=com\n",
        weird_dn = "w*(x)\\5Cy",
    );
    ldap(slapd.dir.path(), &slapd.url, "ldapadd", &people);
    Some(slapd)
}

async fn login(app: &TestApp, login: &str, password: &str) -> crate::helpers::Resp {
    app.call(
        awc::http::Method::POST,
        "/api/v1/auth/ldap/login",
        None,
        Some(json!({"login": login, "password": password})),
        &[],
    )
    .await
}

async fn directory_accounts_sign_in_and_their_groups_grant_roles_live(backend: Backend) {
    let Some(slapd) = start_slapd() else {
        return;
    };
    let url = slapd.url.clone();
    let ca = slapd.dir.path().join("ca.pem").display().to_string();
    let Some(app) = spawn_app_with(backend, |s| {
        let l = &mut s.auth.ldap;
        l.url = url;
        l.starttls = true;
        l.ca_file = ca;
        l.bind_dn = ADMIN.into();
        l.bind_password = ADMIN_PASSWORD.into();
        l.base_dn = "ou=people,dc=example,dc=com".into();
        l.user_filter = "(&(|(mail={login})(uid={login}))(!(employeeType=disabled)))".into();
        l.groups_base_dn = "ou=groups,dc=example,dc=com".into();
        l.group_roles = vec![format!("{EDITORS} -> acme:editor")];
    })
    .await
    else {
        return;
    };
    let methods = app.get("/api/v1/auth/methods", "").await;
    assert_eq!(
        methods.body,
        json!({"password": true, "ldap": true, "sso": []})
    );
    // A workspace made in Stoa, named by its slug in the group rule.
    let owner = app.register("owner").await;
    let ws = app
        .post(
            "/api/v1/workspaces",
            &owner.token,
            json!({"name": "Acme", "slug": "acme"}),
        )
        .await;
    assert_eq!(ws.status, 201, "{:?}", ws.body);
    let ws = ws.body["id"].as_i64().unwrap();

    // Ada signs in with her directory account (over StartTLS): made at first sign-in, an
    // editor of acme through her group.
    let ada = login(&app, "ada@corp.example", "ada-directory-password").await;
    assert_eq!(ada.status, 200, "{:?}", ada.body);
    let token = ada.body["access_token"].as_str().unwrap().to_string();
    let refresh = ada.body["refresh_token"].as_str().unwrap().to_string();
    let me = app.get("/api/v1/me", &token).await;
    assert_eq!(me.body["display_name"], "Ada Lovelace");
    assert_eq!(me.body["email_verified"], true);
    let role = app.get(&format!("/api/v1/workspaces/{ws}"), &token).await;
    assert_eq!(role.body["role"], "editor", "{:?}", role.body);
    // By her user name too: the same account.
    let again = login(&app, "ada", "ada-directory-password").await;
    assert_eq!(again.body["user"]["id"], me.body["id"]);

    // One answer for a wrong password, an unknown person, an empty password (an
    // unauthenticated bind) and a disabled account.
    for (who, password) in [
        ("ada@corp.example", "wrong"),
        ("nobody@corp.example", "whatever"),
        ("ada@corp.example", ""),
        ("bob@corp.example", "bob-directory-password"),
        // Filter metacharacters are data: `*` matches nobody, not everybody.
        ("*", "ada-directory-password"),
        ("*)(uid=*", "ada-directory-password"),
    ] {
        let r = login(&app, who, password).await;
        assert_eq!(r.status, 401, "{who}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_credentials");
    }
    let wendy = login(&app, WEIRD, "wendy-directory-password").await;
    assert_eq!(wendy.status, 200, "{:?}", wendy.body);
    assert_eq!(wendy.body["user"]["display_name"], "Wendy Weird");
    // The connection is TLS, checked: a directory whose certificate another CA signed is
    // not believed (a plain connection would not have cared).
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Other CA",
        ])
        .arg("-keyout")
        .arg(slapd.dir.path().join("other.key"))
        .arg("-out")
        .arg(slapd.dir.path().join("other.pem")));
    let mut untrusting = stoa::config::Settings::load_with_env(None, Vec::new())
        .unwrap()
        .auth
        .ldap;
    untrusting.url = slapd.url.clone();
    untrusting.starttls = true;
    untrusting.ca_file = slapd.dir.path().join("other.pem").display().to_string();
    untrusting.bind_dn = ADMIN.into();
    untrusting.bind_password = ADMIN_PASSWORD.into();
    untrusting.base_dn = "ou=people,dc=example,dc=com".into();
    let other = stoa::auth::ldap::LdapDirectory::new(&untrusting)
        .unwrap()
        .unwrap();
    assert!(matches!(
        other
            .sign_in("ada@corp.example", "ada-directory-password")
            .await,
        Err(stoa::auth::ldap::LdapError::Unavailable(_))
    ));
    // A password account cannot be reached through the directory, nor the reverse.
    let local = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@corp.example", "password": "ada-directory-password"})),
            &[],
        )
        .await;
    assert_eq!(local.status, 401);

    // Removed from the group in the directory: at her next refresh the role goes, and her
    // live channel of the workspace closes as a REST removal would close it.
    let mut socket = Ws::connect(&app, &token).await;
    socket.join_ok(&format!("workspace:{ws}"), json!({})).await;
    ldap(
        slapd.dir.path(),
        &slapd.url,
        "ldapmodify",
        &format!(
            "dn: {EDITORS}\nchangetype: modify\ndelete: member\nmember: uid=ada,ou=people,dc=example,dc=com\n"
        ),
    );
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let closed = socket.next(&format!("workspace:{ws}"), "phx_close").await;
    assert_eq!(closed.payload["reason"], "membership_revoked");
    let fresh = r.body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), fresh)
            .await
            .status,
        404
    );
    let refresh = r.body["refresh_token"].as_str().unwrap().to_string();

    // Disabled in the directory: the next refresh ends the login.
    ldap(
        slapd.dir.path(),
        &slapd.url,
        "ldapmodify",
        "dn: uid=ada,ou=people,dc=example,dc=com\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
    );
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(app.get("/api/v1/me", fresh).await.status, 401);
}

use super::agent::Device;
use super::password::PasswordHash;
use super::*;

fn link() -> LinkRecord {
    LinkRecord {
        id: "lnk_1".into(),
        target: "https://example.com/page?utm_source=verge#top".into(),
        status: 301,
        ..LinkRecord::default()
    }
}

fn visit() -> Visit<'static> {
    Visit { query: None, device: Device::Desktop, country: None, now_millis: 1_000 }
}

#[test]
fn records_round_trip_with_every_field() {
    let full = LinkRecord {
        id: "lnk_2".into(),
        target: "https://example.com/?a=b=c".into(),
        status: 308,
        expires_at: Some(5_000),
        expired_url: Some("https://example.com/expired".into()),
        exhausted: true,
        password: Some(PasswordHash::new("pw", [1; 16])),
        forward_query: true,
        ios: Some("https://apps.apple.com/app".into()),
        android: Some("https://play.google.com/app".into()),
        desktop: Some("https://example.com/desktop".into()),
        countries: vec![("DE".into(), "https://example.de/".into()), ("FR".into(), "https://example.fr/".into())],
    };
    assert_eq!(LinkRecord::decode(&full.encode()).unwrap(), full);
    assert_eq!(LinkRecord::decode(&link().encode()).unwrap(), link());
    let domain = DomainRecord { not_found_url: Some("https://example.com/404".into()) };
    assert_eq!(DomainRecord::decode(&domain.encode()).unwrap(), domain);
    assert_eq!(DomainRecord::decode(&DomainRecord::default().encode()).unwrap(), DomainRecord::default());
}

#[test]
fn unreadable_records_are_refused() {
    assert!(LinkRecord::decode(b"verge-link 2\ntarget=https://x/\n").is_err());
    assert!(LinkRecord::decode(b"verge-link 1\nstatus=302\n").is_err(), "no target");
    assert!(LinkRecord::decode(b"verge-link 1\ntarget=https://x/\nstatus=200\n").is_err());
    assert!(LinkRecord::decode(b"verge-link 1\ntarget=https://x/\nnew_field=1\n").is_ok(), "newer fields ignored");
}

#[test]
fn an_active_link_redirects_with_its_status() {
    let decision = decide(&link(), &visit(), false);
    assert_eq!(decision, Decision::Redirect { status: 301, location: link().target });
}

#[test]
fn the_query_is_forwarded_only_when_asked_and_before_the_fragment() {
    let with_query = Visit { query: Some("ref=tw&x=1"), ..visit() };
    assert_eq!(decide(&link(), &with_query, false), Decision::Redirect { status: 301, location: link().target });
    let forwarding = LinkRecord { forward_query: true, ..link() };
    assert_eq!(
        decide(&forwarding, &with_query, false),
        Decision::Redirect { status: 301, location: "https://example.com/page?utm_source=verge&ref=tw&x=1#top".into() }
    );
    assert_eq!(append_query("https://a.example/", "q=1"), "https://a.example/?q=1");
    assert_eq!(append_query("https://a.example/?", "q=1"), "https://a.example/?q=1");
}

#[test]
fn country_beats_device_beats_default() {
    let targeted = LinkRecord {
        ios: Some("https://ios.example/".into()),
        countries: vec![("DE".into(), "https://de.example/".into())],
        ..link()
    };
    let location = |device, country| match decide(&targeted, &Visit { device, country, ..visit() }, false) {
        Decision::Redirect { location, .. } => location,
        other => panic!("{other:?}"),
    };
    assert_eq!(location(Device::Ios, Some("de")), "https://de.example/");
    assert_eq!(location(Device::Ios, Some("FR")), "https://ios.example/");
    assert_eq!(location(Device::Android, None), link().target);
}

#[test]
fn expiry_limit_and_password_in_that_order() {
    let expired = LinkRecord { expires_at: Some(1_000), ..link() };
    assert_eq!(decide(&expired, &visit(), true), Decision::Gone, "expiry is inclusive of its instant");
    let not_yet = LinkRecord { expires_at: Some(1_001), ..link() };
    assert!(matches!(decide(&not_yet, &visit(), false), Decision::Redirect { .. }));
    let expired_elsewhere = LinkRecord { expired_url: Some("https://example.com/over".into()), ..expired };
    assert_eq!(
        decide(&expired_elsewhere, &visit(), false),
        Decision::Redirect { status: 302, location: "https://example.com/over".into() }
    );
    let exhausted = LinkRecord { exhausted: true, password: Some(PasswordHash::new("pw", [2; 16])), ..link() };
    assert_eq!(decide(&exhausted, &visit(), true), Decision::Gone);
    let protected = LinkRecord { password: Some(PasswordHash::new("pw", [2; 16])), ..link() };
    assert_eq!(decide(&protected, &visit(), false), Decision::PasswordRequired);
    assert!(matches!(decide(&protected, &visit(), true), Decision::Redirect { .. }));
}

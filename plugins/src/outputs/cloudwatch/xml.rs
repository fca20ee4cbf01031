//! Just enough XML to read CloudWatch's Query-protocol answers (errors, DescribeAlarms): a tree
//! of elements with their text. Attributes, namespaces and processing instructions are skipped.

/// One element: its local name, child elements and (decoded) text.
#[derive(Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the element at `path` below this one.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        let mut e = self;
        for p in path {
            e = e.child(p)?;
        }
        Some(e.text.as_str())
    }

    /// The first element named `name` anywhere below (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(f) = c.find(name) {
                return Some(f);
            }
        }
        None
    }
}

/// Parses a document; `None` if it is not well-formed enough to read.
pub fn parse(s: &str) -> Option<Element> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find('<') {
            None => {
                push_text(stack.last_mut()?, rest)?;
                break;
            }
            Some(i) => {
                push_text(stack.last_mut()?, &rest[..i])?;
                rest = &rest[i..];
            }
        }
        if let Some(r) = rest.strip_prefix("<?") {
            rest = &r[r.find("?>")? + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->")? + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>")?;
            stack.last_mut()?.text.push_str(&r[..end]);
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<!") {
            rest = &r[r.find('>')? + 1..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>')?;
            let name = local(r[..end].trim());
            let done = stack.pop()?;
            if done.name != name || stack.is_empty() {
                return None;
            }
            stack.last_mut()?.children.push(done);
            rest = &r[end + 1..];
        } else {
            let r = &rest[1..];
            let end = r.find('>')?;
            let tag = &r[..end];
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name = local(tag.split(|c: char| c.is_ascii_whitespace()).next()?);
            if name.is_empty() {
                return None;
            }
            let el = Element {
                name: name.to_string(),
                ..Default::default()
            };
            if empty {
                stack.last_mut()?.children.push(el);
            } else {
                stack.push(el);
            }
            rest = &r[end + 1..];
        }
    }
    if stack.len() != 1 {
        return None;
    }
    let mut doc = stack.pop()?;
    if doc.children.len() != 1 {
        return None;
    }
    doc.children.pop()
}

/// `ns:Name` → `Name`.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Appends text with its entities decoded; whitespace-only runs between elements are kept
/// out of the text of elements that have children.
fn push_text(el: &mut Element, raw: &str) -> Option<()> {
    if raw.is_empty() {
        return Some(());
    }
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        el.text.push_str(&rest[..i]);
        let r = &rest[i + 1..];
        let end = r.find(';')?;
        let ent = &r[..end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()?
                } else {
                    ent.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        el.text.push(c);
        rest = &r[end + 1..];
    }
    el.text.push_str(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_error_response() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <Error>
    <Type>Sender</Type>
    <Code>InvalidParameterValue</Code>
    <Message>The value &lt;x&gt; &amp; &#65;&#x42; is bad</Message>
  </Error>
  <RequestId>abc</RequestId>
</ErrorResponse>"#;
        let e = parse(doc).unwrap();
        assert_eq!(e.name, "ErrorResponse");
        assert_eq!(e.text_at(&["Error", "Code"]), Some("InvalidParameterValue"));
        assert_eq!(
            e.text_at(&["Error", "Message"]),
            Some("The value <x> & AB is bad")
        );
        assert_eq!(e.find("RequestId").unwrap().text, "abc");
    }

    #[test]
    fn nested_members_and_empty_elements() {
        let doc = "<R><A><member><N>x</N><D><member>1</member><member>2</member></D></member>\
                   <member><N>y</N><D/></member></A></R>";
        let e = parse(doc).unwrap();
        let a = e.child("A").unwrap();
        let members: Vec<_> = a.all("member").collect();
        assert_eq!(members.len(), 2);
        let d: Vec<_> = members[0]
            .child("D")
            .unwrap()
            .all("member")
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(d, ["1", "2"]);
        assert!(members[1].child("D").unwrap().children.is_empty());
    }

    #[test]
    fn malformed_documents_give_none() {
        for bad in [
            "<a><b></a>",
            "<a>",
            "</a>",
            "<a>&bogus;</a>",
            "<a>&#xZZ;</a>",
            "",
            "<a/><b/>",
            "<a",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }
        #[test]
        fn never_panics_on_tag_soup(s in "[<>/?!a-z&;# \\[\\]-]{0,40}") {
            let _ = parse(&s);
        }
    }
}
